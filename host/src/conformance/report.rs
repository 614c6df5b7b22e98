//! The outcome of a conformance sweep: one row per spec sentence checked,
//! printed as a table for people and as JSON for tools.

use serde::Serialize;
use tonic::Code;

/// What a row found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "result", content = "detail")]
pub enum Verdict {
    /// The driver answered as the spec says.
    Passed,
    /// It did not: what the spec wants and what came back.
    Failed(String),
    /// Not run: the driver does not offer what the row needs, or an earlier
    /// step it builds on failed.
    Skipped(String),
}

/// One sentence of the spec, checked once.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// The RPC (or service) the sentence is about.
    pub rpc: String,
    /// The spec's words, shortened: what must hold.
    pub spec: String,
    /// What the driver did.
    #[serde(flatten)]
    pub verdict: Verdict,
}

/// Every row of one sweep, in the order they ran.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The rows.
    pub rows: Vec<Row>,
}

/// A gRPC code as the spec writes it (`NOT_FOUND`).
pub fn code_name(code: Code) -> String {
    let debug = format!("{code:?}");
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

impl Report {
    /// Records a row.
    pub fn push(&mut self, rpc: &str, spec: &str, verdict: Verdict) {
        self.rows.push(Row {
            rpc: rpc.into(),
            spec: spec.into(),
            verdict,
        });
    }

    /// Records that `rpc` should answer `want` and answered `got` (a status
    /// code, with its message when it is an error).
    pub fn expect(&mut self, rpc: &str, spec: &str, want: Code, got: (Code, &str)) {
        let verdict = if got.0 == want {
            Verdict::Passed
        } else if got.1.is_empty() {
            Verdict::Failed(format!(
                "want {}, got {}",
                code_name(want),
                code_name(got.0)
            ))
        } else {
            Verdict::Failed(format!(
                "want {}, got {}: {}",
                code_name(want),
                code_name(got.0),
                got.1
            ))
        };
        self.push(rpc, spec, verdict);
    }

    /// Rows that failed.
    pub fn failures(&self) -> impl Iterator<Item = &Row> {
        self.rows
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Failed(_)))
    }

    /// Whether every row that ran passed (and at least one ran).
    pub fn passed(&self) -> bool {
        self.failures().next().is_none() && self.rows.iter().any(|r| r.verdict == Verdict::Passed)
    }

    /// How many rows passed, failed and were skipped.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut c = (0, 0, 0);
        for r in &self.rows {
            match r.verdict {
                Verdict::Passed => c.0 += 1,
                Verdict::Failed(_) => c.1 += 1,
                Verdict::Skipped(_) => c.2 += 1,
            }
        }
        c
    }

    /// The table people read: RPC, the spec's words, and the result.
    pub fn table(&self) -> String {
        let rpc_w = self.rows.iter().map(|r| r.rpc.len()).max().unwrap_or(3);
        let spec_w = self.rows.iter().map(|r| r.spec.len()).max().unwrap_or(4);
        let mut out = format!("{:<rpc_w$}  {:<spec_w$}  RESULT\n", "RPC", "SPEC");
        for r in &self.rows {
            let result = match &r.verdict {
                Verdict::Passed => "pass".to_owned(),
                Verdict::Failed(why) => format!("FAIL {why}"),
                Verdict::Skipped(why) => format!("skip ({why})"),
            };
            out.push_str(&format!(
                "{:<rpc_w$}  {:<spec_w$}  {result}\n",
                r.rpc, r.spec
            ));
        }
        let (p, f, s) = self.counts();
        out.push_str(&format!("{p} passed, {f} failed, {s} skipped\n"));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_read_as_the_spec_writes_them_and_a_failure_says_what_came_back() {
        assert_eq!(code_name(Code::NotFound), "NOT_FOUND");
        assert_eq!(code_name(Code::Ok), "OK");
        assert_eq!(code_name(Code::FailedPrecondition), "FAILED_PRECONDITION");
        let mut r = Report::default();
        r.expect("A", "ok", Code::Ok, (Code::Ok, ""));
        r.expect("B", "nf", Code::NotFound, (Code::Internal, "boom"));
        r.push("C", "later", Verdict::Skipped("not offered".into()));
        assert_eq!(r.counts(), (1, 1, 1));
        assert!(!r.passed());
        let t = r.table();
        assert!(t.contains("FAIL want NOT_FOUND, got INTERNAL: boom"), "{t}");
        assert!(t.contains("skip (not offered)"), "{t}");
        assert!(t.ends_with("1 passed, 1 failed, 1 skipped\n"), "{t}");
        let j = serde_json::to_value(&r).unwrap();
        assert_eq!(j["rows"][1]["result"], "failed");
        assert_eq!(j["rows"][0]["result"], "passed");
    }

    #[test]
    fn a_sweep_where_nothing_ran_has_not_passed() {
        let mut r = Report::default();
        r.push("C", "later", Verdict::Skipped("not offered".into()));
        assert!(!r.passed());
    }
}
