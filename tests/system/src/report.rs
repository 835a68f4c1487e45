//! A readable pass/fail report for the end-to-end run.

use std::time::Instant;

/// Collects check results and prints them as they happen.
#[derive(Default)]
pub struct Report {
    results: Vec<(String, Result<(), String>)>,
}

impl Report {
    /// Records one check; prints `PASS`/`FAIL` with the detail at once.
    pub fn check(&mut self, name: &str, result: Result<(), String>) {
        match &result {
            Ok(()) => println!("  PASS  {name}"),
            Err(detail) => {
                println!("  FAIL  {name}");
                for line in detail.lines().take(30) {
                    println!("          {line}");
                }
            }
        }
        self.results.push((name.to_owned(), result));
    }

    /// Runs `body` as one scenario with a heading and its duration.
    pub fn scenario(&mut self, title: &str, body: impl FnOnce(&mut Report)) {
        println!("\n== {title}");
        let start = Instant::now();
        body(self);
        println!("   ({:.1}s)", start.elapsed().as_secs_f64());
    }

    /// How many checks failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_err()).count()
    }

    /// Prints the summary; the last line is `N passed, N failed`.
    pub fn summary(&self) {
        let failed = self.failed();
        let passed = self.results.len() - failed;
        println!("\n== summary");
        for (name, result) in &self.results {
            if result.is_err() {
                println!("  failed: {name}");
            }
        }
        println!("{passed} passed, {failed} failed");
    }
}
