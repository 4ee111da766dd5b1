//! Object-key layout templates such as
//! `{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png`.
//!
//! Literals match regardless of ASCII case (`.PNG` is a PNG); values keep their case.
//! A template is a sequence of literals and placeholders. Matching is exact on literals,
//! placeholders never span a `/`, and numeric placeholders (`plate`, `site`, `channel`)
//! accept only ASCII digits. Keys that do not match are *ignored* (counted, not stored);
//! keys that match but carry values that would break a partition path (`..`, `=`, control
//! characters) are *invalid* and become rejects.

use std::fmt;

use crate::{Error, Result};

/// The RxRx1 bucket layout.
pub const RXRX1_LAYOUT: &str = "{dataset}/{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png";

/// A placeholder of a layout template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `{dataset}`, e.g. `train`.
    Dataset,
    /// `{experiment}`, e.g. `HUVEC-01`.
    Experiment,
    /// `{plate}`, a number.
    Plate,
    /// `{well}`, e.g. `B02`.
    Well,
    /// `{site}`, a number.
    Site,
    /// `{channel}`, a number (1-based).
    Channel,
}

impl Field {
    fn parse(name: &str) -> Option<Field> {
        Some(match name {
            "dataset" => Field::Dataset,
            "experiment" => Field::Experiment,
            "plate" => Field::Plate,
            "well" => Field::Well,
            "site" => Field::Site,
            "channel" => Field::Channel,
            _ => return None,
        })
    }

    fn numeric(self) -> bool {
        matches!(self, Field::Plate | Field::Site | Field::Channel)
    }

    fn name(self) -> &'static str {
        match self {
            Field::Dataset => "dataset",
            Field::Experiment => "experiment",
            Field::Plate => "plate",
            Field::Well => "well",
            Field::Site => "site",
            Field::Channel => "channel",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Field(Field),
}

/// A parsed layout template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayoutTemplate {
    text: String,
    tokens: Vec<Token>,
}

/// The values a key carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct KeyFields {
    /// Dataset (`train`/`test`), when the layout has it.
    pub dataset: Option<String>,
    /// Experiment (batch) name.
    pub experiment: String,
    /// Plate number.
    pub plate: u32,
    /// Well address.
    pub well: String,
    /// Imaging site within the well.
    pub site: u32,
    /// Channel number (1-based).
    pub channel: u32,
}

/// Outcome of matching a key against a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyMatch {
    /// The key matches and its values are usable.
    Matched(KeyFields),
    /// The key does not follow the layout: ignored, and counted.
    Ignored,
    /// The key follows the layout but a value is unusable; the message says which and why.
    Invalid(String),
}

impl LayoutTemplate {
    /// Parse a template. Requires `experiment`, `plate`, `well`, `site` and `channel`.
    pub fn parse(text: &str) -> Result<Self> {
        let err = |message: String| Error::Layout {
            template: text.to_string(),
            message,
        };
        let mut tokens = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(open) = rest.find('{') {
                if open > 0 {
                    tokens.push(Token::Literal(rest[..open].to_string()));
                }
                let close = rest[open..]
                    .find('}')
                    .ok_or_else(|| err("unclosed '{'".into()))?
                    + open;
                let name = &rest[open + 1..close];
                let field = Field::parse(name).ok_or_else(|| {
                    err(format!(
                        "unknown placeholder {{{name}}}; known: dataset, experiment, plate, well, site, channel"
                    ))
                })?;
                if matches!(tokens.last(), Some(Token::Field(_))) {
                    return Err(err(format!(
                        "placeholder {{{name}}} directly follows another placeholder; separate them with a literal"
                    )));
                }
                if tokens.iter().any(|t| t == &Token::Field(field)) {
                    return Err(err(format!("placeholder {{{name}}} appears twice")));
                }
                tokens.push(Token::Field(field));
                rest = &rest[close + 1..];
            } else {
                if rest.contains('}') {
                    return Err(err("'}' without '{'".into()));
                }
                tokens.push(Token::Literal(rest.to_string()));
                rest = "";
            }
        }
        for required in [
            Field::Experiment,
            Field::Plate,
            Field::Well,
            Field::Site,
            Field::Channel,
        ] {
            if !tokens.contains(&Token::Field(required)) {
                return Err(err(format!("missing placeholder {{{}}}", required.name())));
            }
        }
        Ok(Self {
            text: text.to_string(),
            tokens,
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Match an object key (relative to the source prefix).
    pub fn match_key(&self, key: &str) -> KeyMatch {
        let mut values: Vec<(Field, &str)> = Vec::with_capacity(6);
        if !match_tokens(&self.tokens, key, &mut values) {
            return KeyMatch::Ignored;
        }
        let mut fields = KeyFields::default();
        for (field, value) in values {
            if let Err(why) = check_value(field, value) {
                return KeyMatch::Invalid(why);
            }
            match field {
                Field::Dataset => fields.dataset = Some(value.to_string()),
                Field::Experiment => fields.experiment = value.to_string(),
                Field::Well => fields.well = value.to_string(),
                Field::Plate | Field::Site | Field::Channel => {
                    let Ok(n) = value.parse::<u32>() else {
                        return KeyMatch::Invalid(format!(
                            "{} {value:?} is not a number",
                            field.name()
                        ));
                    };
                    match field {
                        Field::Plate => fields.plate = n,
                        Field::Site => fields.site = n,
                        _ => fields.channel = n,
                    }
                }
            }
        }
        KeyMatch::Matched(fields)
    }

    /// Build the key for the given values (the inverse of [`LayoutTemplate::match_key`]).
    pub fn render(&self, f: &KeyFields) -> String {
        let mut out = String::new();
        for t in &self.tokens {
            match t {
                Token::Literal(l) => out.push_str(l),
                Token::Field(Field::Dataset) => out.push_str(f.dataset.as_deref().unwrap_or("")),
                Token::Field(Field::Experiment) => out.push_str(&f.experiment),
                Token::Field(Field::Plate) => out.push_str(&f.plate.to_string()),
                Token::Field(Field::Well) => out.push_str(&f.well),
                Token::Field(Field::Site) => out.push_str(&f.site.to_string()),
                Token::Field(Field::Channel) => out.push_str(&f.channel.to_string()),
            }
        }
        out
    }

    /// Whether the layout has a `{dataset}` placeholder.
    pub fn has_dataset(&self) -> bool {
        self.tokens.contains(&Token::Field(Field::Dataset))
    }
}

impl fmt::Display for LayoutTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn match_tokens<'k>(tokens: &[Token], key: &'k str, out: &mut Vec<(Field, &'k str)>) -> bool {
    match tokens.split_first() {
        None => key.is_empty(),
        Some((Token::Literal(lit), rest)) => {
            // Literals match without regard to ASCII case, so `B02_s1_w1.PNG` is recognised
            // (and then caught as a duplicate of `B02_s1_w1.png`) rather than ignored.
            key.len() >= lit.len()
                && key.is_char_boundary(lit.len())
                && key[..lit.len()].eq_ignore_ascii_case(lit)
                && match_tokens(rest, &key[lit.len()..], out)
        }
        Some((Token::Field(field), rest)) => {
            // A value never crosses a '/', so candidates end before the next '/'.
            let segment_end = key.find('/').unwrap_or(key.len());
            // Shortest value first: the literal after a placeholder is its delimiter.
            for end in 1..=segment_end {
                if !key.is_char_boundary(end) {
                    continue;
                }
                let value = &key[..end];
                if field.numeric() && !value.bytes().all(|b| b.is_ascii_digit()) {
                    break;
                }
                out.push((*field, value));
                if match_tokens(rest, &key[end..], out) {
                    return true;
                }
                out.pop();
            }
            false
        }
    }
}

/// Values become partition directory names and site ids: refuse what would break them.
fn check_value(field: Field, value: &str) -> std::result::Result<(), String> {
    let name = field.name();
    if value == "." || value == ".." || value.contains("..") {
        return Err(format!("{name} {value:?} contains a path traversal ('..')"));
    }
    // Any other character is fine: partition directories percent-encode their values.
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{name} {value:?} contains the control character {c:?}"
        ));
    }
    if field.numeric() && value.len() > 9 {
        return Err(format!("{name} {value:?} is out of range"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rx() -> LayoutTemplate {
        LayoutTemplate::parse(RXRX1_LAYOUT).unwrap()
    }

    #[test]
    fn matches_rxrx1_keys() {
        let m = rx().match_key("train/HEPG2-01/Plate1/B02_s2_w6.png");
        let KeyMatch::Matched(f) = m else {
            panic!("{m:?}")
        };
        assert_eq!(f.dataset.as_deref(), Some("train"));
        assert_eq!(f.experiment, "HEPG2-01");
        assert_eq!(
            (f.plate, f.well.as_str(), f.site, f.channel),
            (1, "B02", 2, 6)
        );
        assert_eq!(rx().render(&f), "train/HEPG2-01/Plate1/B02_s2_w6.png");
    }

    #[test]
    fn literal_case_does_not_matter() {
        let KeyMatch::Matched(f) = rx().match_key("train/HEPG2-01/plate1/B02_S2_W6.PNG") else {
            panic!()
        };
        assert_eq!((f.plate, f.site, f.channel), (1, 2, 6));
    }

    #[test]
    fn ignores_other_keys() {
        for key in [
            "metadata.csv",
            "train/HEPG2-01/Plate1/B02_s2_w6.png.tmp",
            "train/HEPG2-01/PlateX/B02_s2_w6.png",
            "train/HEPG2-01/Plate1/B02_s_w6.png",
            "train/HEPG2-01/Plate1/sub/B02_s1_w6.png",
            "train/HEPG2-01/Plate1/B02_s1_w6.tif",
        ] {
            assert_eq!(rx().match_key(key), KeyMatch::Ignored, "{key}");
        }
    }

    #[test]
    fn rejects_traversal_control_characters_and_huge_numbers() {
        assert!(matches!(
            rx().match_key("train/../Plate1/B02_s1_w1.png"),
            KeyMatch::Invalid(_)
        ));
        assert!(matches!(
            rx().match_key("train/exp\u{1}/Plate1/B02_s1_w1.png"),
            KeyMatch::Invalid(_)
        ));
        // Any other name is a name: partition paths percent-encode it.
        let KeyMatch::Matched(f) = rx().match_key("train/exp=1 é%'/Plate1/B02_s1_w1.png") else {
            panic!("a name with '=', a space, 'é', '%' and a quote is matched")
        };
        assert_eq!(f.experiment, "exp=1 é%'");
        assert!(matches!(
            rx().match_key("train/HEPG2-01/Plate1234567890/B02_s1_w1.png"),
            KeyMatch::Invalid(_)
        ));
    }

    #[test]
    fn rxrx3_layout_without_dataset() {
        let t = LayoutTemplate::parse("{experiment}/Plate{plate}/{well}_s{site}_w{channel}.png")
            .unwrap();
        assert!(!t.has_dataset());
        let KeyMatch::Matched(f) = t.match_key("gene-079/Plate8/H29_s1_w3.png") else {
            panic!()
        };
        assert_eq!(
            (f.experiment.as_str(), f.plate, f.well.as_str()),
            ("gene-079", 8, "H29")
        );
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(LayoutTemplate::parse("{experiment}/{plate}{well}_s{site}_w{channel}").is_err());
        assert!(LayoutTemplate::parse("{experiment}/Plate{plate}/{well}_s{site}.png").is_err());
        assert!(LayoutTemplate::parse("{experiment}/{bogus}/{well}_s{site}_w{channel}").is_err());
        assert!(LayoutTemplate::parse("{experiment/Plate{plate}").is_err());
    }
}
