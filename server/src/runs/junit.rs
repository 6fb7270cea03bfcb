//! JUnit XML reports → passed / failed / skipped, with failure messages.
//! Tolerant of the dialects real tools write (`<testsuites>` or a bare
//! `<testsuite>`, `<failure>` or `<error>`, message in an attribute or text).

use app::dto::{TestCaseFailure, TestReportSummary};
use quick_xml::Reader;
use quick_xml::events::{BytesStart, Event};

const MAX_MESSAGE: usize = 2000;

#[derive(Debug, thiserror::Error)]
#[error("{file}: not a JUnit XML report: {message}")]
pub struct JunitError {
    pub file: String,
    pub message: String,
}

struct OpenCase {
    suite: String,
    name: String,
    outcome: Outcome,
    message: String,
}

#[derive(PartialEq)]
enum Outcome {
    Passed,
    Failed,
    Skipped,
}

pub fn parse(file: &str, step: &str, xml: &str) -> Result<TestReportSummary, JunitError> {
    let fail = |message: String| JunitError {
        file: file.to_string(),
        message,
    };
    let mut reader = Reader::from_str(xml);
    let mut report = TestReportSummary {
        step: step.to_string(),
        name: file.to_string(),
        passed: 0,
        failed: 0,
        skipped: 0,
        failures: Vec::new(),
    };
    let mut suites: Vec<String> = Vec::new();
    let mut case: Option<OpenCase> = None;
    let mut in_failure_text = false;
    let mut saw_root = false;
    loop {
        let event = reader.read_event().map_err(|e| fail(e.to_string()))?;
        match event {
            Event::Start(tag) | Event::Empty(tag)
                if matches!(tag.name().as_ref(), "testsuites" | "testsuite") =>
            {
                saw_root = true;
                if tag.name().as_ref() == "testsuite" {
                    suites.push(attribute(&tag, "name").unwrap_or_default());
                }
            }
            Event::Start(tag) if tag.name().as_ref() == "testcase" => {
                case = Some(open_case(&tag, &suites));
            }
            Event::Empty(tag) if tag.name().as_ref() == "testcase" => {
                report.passed += 1;
                let _ = open_case(&tag, &suites);
            }
            Event::Start(tag) | Event::Empty(tag)
                if matches!(tag.name().as_ref(), "failure" | "error") =>
            {
                if let Some(case) = case.as_mut() {
                    case.outcome = Outcome::Failed;
                    case.message = attribute(&tag, "message").unwrap_or_default();
                    in_failure_text = case.message.is_empty();
                }
            }
            Event::Start(tag) | Event::Empty(tag) if tag.name().as_ref() == "skipped" => {
                if let Some(case) = case.as_mut()
                    && case.outcome != Outcome::Failed
                {
                    case.outcome = Outcome::Skipped;
                }
            }
            Event::Text(text) if in_failure_text => {
                if let Some(case) = case.as_mut() {
                    case.message.push_str(&text.xml10_content());
                }
            }
            Event::CData(text) if in_failure_text => {
                if let Some(case) = case.as_mut() {
                    case.message.push_str(&text.xml10_content());
                }
            }
            Event::End(tag) => match tag.name().as_ref() {
                "failure" | "error" => in_failure_text = false,
                "testsuite" => {
                    suites.pop();
                }
                "testcase" => {
                    if let Some(done) = case.take() {
                        match done.outcome {
                            Outcome::Passed => report.passed += 1,
                            Outcome::Skipped => report.skipped += 1,
                            Outcome::Failed => {
                                report.failed += 1;
                                let mut message = done.message.trim().to_string();
                                if message.len() > MAX_MESSAGE {
                                    let mut cut = MAX_MESSAGE;
                                    while !message.is_char_boundary(cut) {
                                        cut -= 1;
                                    }
                                    message.truncate(cut);
                                    message.push('…');
                                }
                                report.failures.push(TestCaseFailure {
                                    suite: done.suite,
                                    case: done.name,
                                    message,
                                });
                            }
                        }
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
    }
    if !saw_root {
        return Err(fail("no <testsuite> or <testsuites> element".into()));
    }
    Ok(report)
}

fn open_case(tag: &BytesStart<'_>, suites: &[String]) -> OpenCase {
    let suite = attribute(tag, "classname")
        .filter(|s| !s.is_empty())
        .or_else(|| suites.last().cloned())
        .unwrap_or_default();
    OpenCase {
        suite,
        name: attribute(tag, "name").unwrap_or_default(),
        outcome: Outcome::Passed,
        message: String::new(),
    }
}

fn attribute(tag: &BytesStart<'_>, name: &str) -> Option<String> {
    tag.attributes()
        .flatten()
        .find(|attr| attr.key.as_ref() == name)
        .and_then(|attr| {
            attr.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_passed_failed_skipped_and_keeps_failure_messages() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="cart" tests="4">
    <testcase classname="cart.Totals" name="adds"/>
    <testcase classname="cart.Totals" name="rounds"><failure message="expected 3, got 2">trace</failure></testcase>
    <testcase name="later"><skipped/></testcase>
    <testcase name="explodes"><error><![CDATA[panic: boom
at line 3]]></error></testcase>
  </testsuite>
</testsuites>"#;
        let report = parse("reports/junit.xml", "unit", xml).expect("parses");
        assert_eq!((report.passed, report.failed, report.skipped), (1, 2, 1));
        assert_eq!(
            report.failures,
            vec![
                TestCaseFailure {
                    suite: "cart.Totals".into(),
                    case: "rounds".into(),
                    message: "expected 3, got 2".into()
                },
                TestCaseFailure {
                    suite: "cart".into(),
                    case: "explodes".into(),
                    message: "panic: boom\nat line 3".into()
                },
            ]
        );
    }

    #[test]
    fn refuses_what_is_not_junit() {
        assert!(parse("x.xml", "unit", "<html><body/></html>").is_err());
        assert!(parse("x.xml", "unit", "<testsuite><testcase").is_err());
    }
}
