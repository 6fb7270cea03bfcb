//! A channel's own wording: per event (or `default`), a title and a text
//! template in minijinja syntax over the notice's fields — `app`,
//! `environment`, `event`, `subject`, `title`, `text`, `url` (empty when
//! there is none). Undefined names are errors, checked when the channel is
//! registered, so a typo is refused with its place rather than sent as a
//! blank.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Event, Notice};
use crate::error::Rejected;

/// The key that applies to events without a template of their own.
pub const DEFAULT: &str = "default";

/// One event's wording; a missing part keeps Gantry's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Template {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

pub type Templates = BTreeMap<String, Template>;

fn context(notice: &Notice) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app".into(), notice.app.clone()),
        ("environment".into(), notice.environment.clone()),
        ("event".into(), notice.event.as_str().into()),
        ("subject".into(), notice.subject.clone()),
        ("title".into(), notice.title.clone()),
        ("text".into(), notice.text.clone()),
        ("url".into(), notice.url.clone().unwrap_or_default()),
    ])
}

/// `notice` in the channel's wording. Errors name the template's place
/// (`templates.run_failed.title`).
pub fn apply(templates: &Templates, notice: &Notice) -> Result<Notice, Rejected> {
    let Some((key, template)) = templates
        .get_key_value(notice.event.as_str())
        .or_else(|| templates.get_key_value(DEFAULT))
    else {
        return Ok(notice.clone());
    };
    let values = context(notice);
    let render = |part: &str, source: &Option<String>, fallback: &str| match source {
        Some(source) => crate::gitops::template::render(source, &values)
            .map_err(|error| Rejected(format!("templates.{key}.{part}: {error}"))),
        None => Ok(fallback.to_string()),
    };
    Ok(Notice {
        title: render("title", &template.title, &notice.title)?,
        text: render("text", &template.text, &notice.text)?,
        ..notice.clone()
    })
}

/// Refuses unknown keys and templates that do not render against a sample
/// notice (a syntax error or an undefined name).
pub fn validate(templates: &Templates) -> Result<(), Rejected> {
    for key in templates.keys() {
        let event = if key == DEFAULT {
            Event::RunFailed
        } else {
            Event::parse(key).ok_or_else(|| {
                Rejected(format!(
                    "templates.{key}: not an event; expected {DEFAULT} or one of {}",
                    Event::ALL
                        .iter()
                        .map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?
        };
        let sample = Notice {
            event,
            app: "shop".into(),
            environment: "staging".into(),
            subject: "run:1".into(),
            title: "shop staging: run 1 failed".into(),
            text: "4f2a9c1 on latest: step unit failed".into(),
            url: Some("http://gantry.example.com/runs/1".into()),
        };
        apply(
            &Templates::from([(key.clone(), templates[key].clone())]),
            &sample,
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(event: Event) -> Notice {
        Notice {
            event,
            app: "shop".into(),
            environment: "production".into(),
            subject: "release:7".into(),
            title: "shop production: release 7 is live".into(),
            text: "v1.4 by Ada".into(),
            url: None,
        }
    }

    fn template(title: &str) -> Template {
        Template {
            title: Some(title.into()),
            text: None,
        }
    }

    #[test]
    fn the_event_template_wins_over_the_default_and_missing_parts_keep_gantrys() {
        let templates = Templates::from([
            (
                "released".into(),
                template("🚀 {{ app }} in {{ environment }}"),
            ),
            (DEFAULT.into(), template("[gantry] {{ title }}")),
        ]);
        let released = apply(&templates, &notice(Event::Released)).unwrap();
        assert_eq!(released.title, "🚀 shop in production");
        assert_eq!(released.text, "v1.4 by Ada");
        let drift = apply(&templates, &notice(Event::Drift)).unwrap();
        assert_eq!(drift.title, "[gantry] shop production: release 7 is live");
        let link = Templates::from([(
            DEFAULT.into(),
            Template {
                title: None,
                text: Some("{{ text }}{% if url %} — {{ url }}{% endif %}".into()),
            },
        )]);
        assert_eq!(
            apply(&link, &notice(Event::Drift)).unwrap().text,
            "v1.4 by Ada"
        );
        assert_eq!(
            apply(&Templates::new(), &notice(Event::Drift)).unwrap(),
            notice(Event::Drift)
        );
    }

    #[test]
    fn typos_and_unknown_events_are_refused_with_their_place() {
        let typo = Templates::from([("run_failed".into(), template("{{ enviroment }}"))]);
        let error = validate(&typo).unwrap_err().0;
        assert!(error.starts_with("templates.run_failed.title:"), "{error}");
        assert!(error.contains("undefined"), "{error}");
        let syntax = Templates::from([(DEFAULT.into(), template("{% if %}"))]);
        assert!(
            validate(&syntax)
                .unwrap_err()
                .0
                .starts_with("templates.default.title:")
        );
        let unknown = Templates::from([("deployed".into(), template("x"))]);
        let error = validate(&unknown).unwrap_err().0;
        assert!(
            error.contains("templates.deployed: not an event") && error.contains("released"),
            "{error}"
        );
        assert!(validate(&Templates::from([("drift".into(), template("{{ url }}"))])).is_ok());
    }
}
