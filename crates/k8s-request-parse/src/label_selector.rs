//! Label-selector validity exactly as apimachinery's `labels.Parse` decides
//! it (lexer, recursive-descent parser and `NewRequirement` validation).
//!
//! kube-apiserver only needs to know *whether* the selector parses: a
//! selector that does not parse makes the whole `ListOptions` decode fail,
//! which drops a `metadata.name` field-selector name. So this module answers
//! that question and nothing more.
//!
//! Faithful quirks: the lexer works on bytes; whitespace is only space, tab,
//! CR and LF; a NUL byte ends the token being read (and, where a token would
//! start, ends the input).

use crate::go_text::go_parses_int64;
use crate::validation::{is_qualified_name, is_valid_label_value};

/// Why a label selector does not parse (kept coarse: callers only log it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LabelSelectorError {
    /// The token sequence does not follow the selector grammar.
    Syntax,
    /// A key is not a qualified name.
    InvalidKey,
    /// A value is not a valid label value (or not an integer for `<`/`>`).
    InvalidValue,
}

/// `labels.Parse(selector)` succeeds. Allocates nothing: tokens are lexed
/// on demand (Go scans them all first, which gives the same tokens because
/// lexing never fails and stops at the first end-of-string), and values are
/// validated as they are read (Go collects them, then validates each).
pub(crate) fn validate(selector: &[u8]) -> Result<(), LabelSelectorError> {
    Parser {
        lexer: Lexer::new(selector),
        peeked: None,
    }
    .parse()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// `string2token`.
fn literal_token(literal: &[u8]) -> Option<Token> {
    Some(match literal {
        b")" => Token::ClosedPar,
        b"," => Token::Comma,
        b"!" => Token::DoesNotExist,
        b"==" => Token::DoubleEquals,
        b"=" => Token::Equals,
        b">" => Token::GreaterThan,
        b"in" => Token::In,
        b"<" => Token::LessThan,
        b"!=" => Token::NotEquals,
        b"notin" => Token::NotIn,
        b"(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special_symbol(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
    /// The end-of-string token was produced; Go's token list ends there.
    ended: bool,
}

impl<'a> Lexer<'a> {
    fn new(s: &'a [u8]) -> Self {
        Lexer {
            s,
            pos: 0,
            ended: false,
        }
    }

    /// The next token of Go's scanned list; end-of-string forever after the
    /// first one (which may come from a NUL byte before the real end).
    fn next_token(&mut self) -> (Token, &'a [u8]) {
        if self.ended {
            return (Token::EndOfString, b"");
        }
        let item = self.lex();
        self.ended = item.0 == Token::EndOfString;
        item
    }

    /// Go's `read`: the next byte, or 0 at the end (without advancing).
    fn read(&mut self) -> u8 {
        match self.s.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                b
            }
            None => 0,
        }
    }

    fn unread(&mut self) {
        self.pos = self.pos.saturating_sub(1);
    }

    fn lex(&mut self) -> (Token, &'a [u8]) {
        let mut ch = self.read();
        while is_whitespace(ch) {
            ch = self.read();
        }
        if ch == 0 {
            return (Token::EndOfString, b"");
        }
        self.unread();
        if is_special_symbol(ch) {
            self.scan_special_symbol()
        } else {
            self.scan_id_or_keyword()
        }
    }

    fn scan_id_or_keyword(&mut self) -> (Token, &'a [u8]) {
        let start = self.pos;
        let mut end = start;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if is_special_symbol(ch) || is_whitespace(ch) {
                self.unread();
                break;
            }
            end = self.pos;
        }
        let literal = &self.s[start..end];
        (literal_token(literal).unwrap_or(Token::Identifier), literal)
    }

    fn scan_special_symbol(&mut self) -> (Token, &'a [u8]) {
        let start = self.pos;
        let mut last: Option<(Token, &'a [u8])> = None;
        loop {
            let ch = self.read();
            if ch == 0 {
                break;
            }
            if !is_special_symbol(ch) {
                self.unread();
                break;
            }
            let buffer = &self.s[start..self.pos];
            if let Some(token) = literal_token(buffer) {
                last = Some((token, buffer));
            } else if last.is_some() {
                self.unread();
                break;
            }
        }
        last.unwrap_or((Token::Error, b""))
    }
}

/// Parser context: `in`/`notin` are identifiers where values are expected.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Operator {
    Exists,
    DoesNotExist,
    Equals,
    In,
    GreaterOrLess,
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    peeked: Option<(Token, &'a [u8])>,
}

impl<'a> Parser<'a> {
    fn in_context(item: (Token, &'a [u8]), context: Context) -> (Token, &'a [u8]) {
        match (context, item.0) {
            (Context::Values, Token::In | Token::NotIn) => (Token::Identifier, item.1),
            _ => item,
        }
    }

    fn lookahead(&mut self, context: Context) -> (Token, &'a [u8]) {
        let item = match self.peeked {
            Some(item) => item,
            None => {
                let item = self.lexer.next_token();
                self.peeked = Some(item);
                item
            }
        };
        Self::in_context(item, context)
    }

    fn consume(&mut self, context: Context) -> (Token, &'a [u8]) {
        let item = match self.peeked.take() {
            Some(item) => item,
            None => self.lexer.next_token(),
        };
        Self::in_context(item, context)
    }

    fn parse(&mut self) -> Result<(), LabelSelectorError> {
        loop {
            match self.lookahead(Context::Values).0 {
                Token::Identifier | Token::DoesNotExist => {
                    self.parse_requirement()?;
                    match self.consume(Context::Values).0 {
                        Token::EndOfString => return Ok(()),
                        Token::Comma => {
                            let next = self.lookahead(Context::Values).0;
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(LabelSelectorError::Syntax);
                            }
                        }
                        _ => return Err(LabelSelectorError::Syntax),
                    }
                }
                Token::EndOfString => return Ok(()),
                _ => return Err(LabelSelectorError::Syntax),
            }
        }
    }

    /// `parseRequirement` followed by `NewRequirement`'s validation. The key
    /// was validated while parsing it (NewRequirement checks it again, with
    /// the same result).
    fn parse_requirement(&mut self) -> Result<(), LabelSelectorError> {
        if self.parse_key_and_infer_operator()?.is_some() {
            // Exists / DoesNotExist: no values.
            return Ok(());
        }
        match self.parse_operator()? {
            Operator::In => self.parse_values(),
            Operator::Equals => check_value(self.parse_exact_value()?),
            Operator::GreaterOrLess => {
                let value = self.parse_exact_value()?;
                if !go_parses_int64(value) {
                    return Err(LabelSelectorError::InvalidValue);
                }
                check_value(value)
            }
            Operator::Exists | Operator::DoesNotExist => Ok(()),
        }
    }

    /// Parses `[!]key`; returns the unary operator when there is one.
    fn parse_key_and_infer_operator(&mut self) -> Result<Option<Operator>, LabelSelectorError> {
        let mut operator = None;
        let (mut token, mut literal) = self.consume(Context::Values);
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(LabelSelectorError::Syntax);
        }
        if !is_qualified_name(literal) {
            return Err(LabelSelectorError::InvalidKey);
        }
        let next = self.lookahead(Context::Values).0;
        if (next == Token::EndOfString || next == Token::Comma) && operator.is_none() {
            operator = Some(Operator::Exists);
        }
        Ok(operator)
    }

    fn parse_operator(&mut self) -> Result<Operator, LabelSelectorError> {
        match self.consume(Context::KeyAndOperator).0 {
            Token::In | Token::NotIn => Ok(Operator::In),
            Token::Equals | Token::DoubleEquals | Token::NotEquals => Ok(Operator::Equals),
            Token::GreaterThan | Token::LessThan => Ok(Operator::GreaterOrLess),
            _ => Err(LabelSelectorError::Syntax),
        }
    }

    /// `parseValues`: `(` values `)`, each value checked as a label value
    /// (the empty values Go inserts for `()`, `(,` and `,,` are valid).
    fn parse_values(&mut self) -> Result<(), LabelSelectorError> {
        if self.consume(Context::Values).0 != Token::OpenPar {
            return Err(LabelSelectorError::Syntax);
        }
        match self.lookahead(Context::Values).0 {
            Token::Identifier | Token::Comma => {
                self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(LabelSelectorError::Syntax);
                }
                Ok(())
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(())
            }
            _ => Err(LabelSelectorError::Syntax),
        }
    }

    /// `parseIdentifiersList`, validating each identifier.
    fn parse_identifiers_list(&mut self) -> Result<(), LabelSelectorError> {
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    check_value(literal)?;
                    match self.lookahead(Context::Values).0 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(()),
                        _ => return Err(LabelSelectorError::Syntax),
                    }
                }
                Token::Comma => match self.lookahead(Context::Values).0 {
                    Token::ClosedPar => return Ok(()),
                    Token::Comma => {
                        self.consume(Context::Values);
                    }
                    _ => {}
                },
                _ => return Err(LabelSelectorError::Syntax),
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<&'a [u8], LabelSelectorError> {
        let next = self.lookahead(Context::Values).0;
        if next == Token::EndOfString || next == Token::Comma {
            return Ok(b"");
        }
        match self.consume(Context::Values) {
            (Token::Identifier, literal) => Ok(literal),
            _ => Err(LabelSelectorError::Syntax),
        }
    }
}

/// `validateLabelValue`.
fn check_value(value: &[u8]) -> Result<(), LabelSelectorError> {
    if is_valid_label_value(value) {
        Ok(())
    } else {
        Err(LabelSelectorError::InvalidValue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(selector: &str) -> bool {
        validate(selector.as_bytes()).is_ok()
    }

    #[test]
    fn valid_selectors_from_upstream_tests() {
        for s in [
            "",
            "x=a,y=b,z=c",
            "x = a, y = b",
            "x in (a, b)",
            "x notin (a)",
            "x in (foo,,baz),y,z notin ()",
            "x in (,)",
            "x in ()",
            "!x",
            "x",
            "x>1",
            "x<2",
            "x==a",
            "x!=a",
            "x=",
            "x in (in)",
            "in=notin",
            "example.com/app=web",
        ] {
            assert!(ok(s), "{s:?} should be valid");
        }
    }

    #[test]
    fn invalid_selectors() {
        for s in [
            "app=a/b",
            "app in (a",
            "x=a||y=b",
            "x==a==b",
            "!x=a",
            "x>a",
            "x>",
            "x>1.5",
            "x in (a) y",
            "=a",
            "x,,y",
            ",x",
            "x in",
            "x (a)",
            "x=(a)",
            "-bad=v",
            "a/b/c=v",
            "x notin a",
            "!!x",
            "x in a,b)",
            "x=a b",
            "a=b,",
            // -1 parses as an integer but is not a valid label value.
            "x<-1",
        ] {
            assert!(!ok(s), "{s:?} should be invalid");
        }
    }

    #[test]
    fn nul_byte_quirks() {
        // NUL where a token starts ends the input...
        assert!(validate(b"a=b, \x00garbage").is_err()); // comma then end: identifier expected
        assert!(validate(b"a=b \x00 ((((").is_ok());
        // ...but NUL inside an identifier only ends that identifier.
        assert!(validate(b"a=b\x00c").is_err());
        assert!(validate(b"a=b\x00,c").is_ok());
    }
}
