//! Properties of the redaction rule: no Secret body, however written, sent
//! wherever, cut short wherever, survives in what is recorded; and the
//! sniffer takes any bytes without panicking.

use audit_policy::{names_secret, Redactor};
use proptest::prelude::*;

/// A recognisable secret value (base64 alphabet, as in `data`).
fn value() -> impl Strategy<Value = String> {
    "[A-Za-z0-9+/]{12,24}".prop_map(|v| format!("SECRETVALUE{v}"))
}

/// A Secret manifest holding `value`, in one of several spellings.
fn secret(value: String) -> impl Strategy<Value = String> {
    (0..6usize, any::<bool>(), any::<bool>()).prop_map(move |(style, data_first, list)| {
        let object = match style {
            0 if data_first => format!(
                r#"{{"data":{{"password":"{value}"}},"apiVersion":"v1","kind":"Secret","metadata":{{"name":"s"}}}}"#
            ),
            0 => format!(
                r#"{{"apiVersion":"v1","kind":"Secret","metadata":{{"name":"s"}},"data":{{"password":"{value}"}}}}"#
            ),
            1 => format!(
                "{{\n  \"kind\" : \"\\u0053ecret\",\n  \"stringData\": {{\"p\": \"{value}\"}}\n}}"
            ),
            2 if data_first => {
                format!("metadata:\n  name: s\nstringData:\n  p: {value}\napiVersion: v1\nkind: Secret\n")
            }
            2 => format!("apiVersion: v1\nkind: 'Secret'\nstringData:\n  p: {value}\n"),
            3 => format!("{{kind: Secret, stringData: {{p: {value}}}}}"),
            4 => format!(r#"{{"KIND":"SECRET","data":{{"p":"{value}"}}}}"#),
            _ => format!("---\nkind: !!str Secret\ndata:\n  p: {value}\n"),
        };
        if list && object.starts_with('{') {
            format!(r#"{{"apiVersion":"v1","kind":"List","items":[{{"kind":"ConfigMap"}},{object}]}}"#)
        } else {
            object
        }
    })
}

fn path() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(vec![
        ("POST", "/api/v1/namespaces/a/secrets"),
        ("PATCH", "/api/v1/namespaces/a/secrets/s"),
        ("POST", "/api/v1/namespaces/a/configmaps"),
        ("POST", "/api/v1/namespaces/a/pods"),
        ("PUT", "/apis/example.com/v1/namespaces/a/widgets/w"),
        ("POST", "/api/v1/namespaces/a/secrets/s/status"),
    ])
}

proptest! {
    #[test]
    fn no_secret_body_survives(
        (value, body) in value().prop_flat_map(|v| (Just(v.clone()), secret(v))),
        (method, path) in path(),
        cut in any::<prop::sample::Index>(),
        cut_short in any::<bool>(),
    ) {
        let redactor = Redactor::default();
        let info = k8s_request_parse::request_info(method, path).expect("valid path");
        let bytes = body.as_bytes();
        let recorded = if cut_short { &bytes[..cut.index(bytes.len() + 1)] } else { bytes };
        let truncated = recorded.len() < bytes.len();
        if redactor.decide(&info, recorded, truncated).is_none() {
            let text = String::from_utf8_lossy(recorded);
            prop_assert!(!text.contains(&value), "recorded: {text}");
        }
    }

    #[test]
    fn sniffer_takes_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512), truncated in any::<bool>()) {
        let _ = names_secret(&body, truncated);
    }

    #[test]
    fn sniffer_takes_any_text(body in "[{}\\[\\]\"':, \\n\\-a-zA-Z\\\\]{0,256}", truncated in any::<bool>()) {
        let _ = names_secret(body.as_bytes(), truncated);
    }
}
