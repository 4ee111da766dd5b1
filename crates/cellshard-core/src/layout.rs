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

/// JUMP Cell Painting's image tree (Cell Painting Gallery `cpg0016`): the source is the
/// dataset, the plate barcode the experiment; the batch and the measurement's timestamp are
/// matched and not recorded (`load_data.csv` carries them).
pub const JUMP_LAYOUT: &str = "{dataset}/images/{*}/images/{experiment}__{*}/Images/r{row:02}c{col:02}f{field:02}p{plane:02}-ch{channel}sk1fk1fl1.tiff";

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
    /// `{row}`, the well's row number (1-based; Phenix `r02`), with `{col}` instead of
    /// `{well}`.
    Row,
    /// `{col}`, the well's column number (1-based).
    Col,
    /// `{field}`, the imaging field: the site (Phenix `f01`).
    FieldNo,
    /// `{plane}`, the focal plane (Phenix `p01`): recorded; one plane per site is stored.
    Plane,
    /// `{*}`: any text within one path segment, not recorded (a timestamp, a batch name,
    /// a measurement number). May appear more than once.
    Any,
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
            "row" => Field::Row,
            "col" => Field::Col,
            "field" => Field::FieldNo,
            "plane" => Field::Plane,
            "*" => Field::Any,
            _ => return None,
        })
    }

    fn numeric(self) -> bool {
        !matches!(
            self,
            Field::Dataset | Field::Experiment | Field::Well | Field::Any
        )
    }

    fn name(self) -> &'static str {
        match self {
            Field::Dataset => "dataset",
            Field::Experiment => "experiment",
            Field::Plate => "plate",
            Field::Well => "well",
            Field::Site => "site",
            Field::Channel => "channel",
            Field::Row => "row",
            Field::Col => "col",
            Field::FieldNo => "field",
            Field::Plane => "plane",
            Field::Any => "*",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    /// A placeholder and the digits it is written with (`{row:02}`: 2; 0 for as many as
    /// the number has).
    Field(Field, usize),
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
    /// Plate number (1 when the layout has no `{plate}`: a plate named by its barcode is
    /// the `{experiment}`).
    pub plate: u32,
    /// Well address.
    pub well: String,
    /// Imaging site within the well.
    pub site: u32,
    /// Channel number (1-based).
    pub channel: u32,
    /// Focal plane, when the layout has one.
    pub plane: Option<u32>,
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
    /// Parse a template. Requires `experiment`, `well` (or `row` and `col`), `site` (or
    /// `field`) and `channel`. Without `{plate}` every key is plate 1: layouts whose plates
    /// are named by barcode (JUMP's `BR00117035`) use `{experiment}` for the barcode.
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
                let inner = &rest[open + 1..close];
                let (name, width) = match inner.split_once(':') {
                    Some((n, w)) => (
                        n,
                        w.parse::<usize>()
                            .ok()
                            .filter(|w| (1..=9).contains(w))
                            .ok_or_else(|| {
                                err(format!(
                                    "{{{inner}}}: the width must be 1..9, e.g. {{{n}:02}}"
                                ))
                            })?,
                    ),
                    None => (inner, 0),
                };
                let field = Field::parse(name).ok_or_else(|| {
                    err(format!(
                        "unknown placeholder {{{name}}}; known: dataset, experiment, plate, well (or row and col), site (or field), channel, plane, * (any text)"
                    ))
                })?;
                if width > 0 && !field.numeric() {
                    return Err(err(format!("{{{inner}}}: only numbers take a width")));
                }
                if matches!(tokens.last(), Some(Token::Field(..))) {
                    return Err(err(format!(
                        "placeholder {{{name}}} directly follows another placeholder; separate them with a literal"
                    )));
                }
                if field != Field::Any
                    && tokens
                        .iter()
                        .any(|t| matches!(t, Token::Field(f, _) if *f == field))
                {
                    return Err(err(format!("placeholder {{{name}}} appears twice")));
                }
                tokens.push(Token::Field(field, width));
                rest = &rest[close + 1..];
            } else {
                if rest.contains('}') {
                    return Err(err("'}' without '{'".into()));
                }
                tokens.push(Token::Literal(rest.to_string()));
                rest = "";
            }
        }
        let has = |f: Field| {
            tokens
                .iter()
                .any(|t| matches!(t, Token::Field(g, _) if *g == f))
        };
        for required in [Field::Experiment, Field::Channel] {
            if !has(required) {
                return Err(err(format!("missing placeholder {{{}}}", required.name())));
            }
        }
        match (has(Field::Well), has(Field::Row), has(Field::Col)) {
            (true, false, false) | (false, true, true) => {}
            (true, _, _) => return Err(err("{well} and {row}/{col} name the well twice".into())),
            _ => {
                return Err(err(
                    "missing placeholder {well} (or both {row} and {col})".into()
                ));
            }
        }
        match (has(Field::Site), has(Field::FieldNo)) {
            (true, false) | (false, true) => {}
            (true, true) => return Err(err("{site} and {field} name the site twice".into())),
            _ => return Err(err("missing placeholder {site} (or {field})".into())),
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
        let mut fields = KeyFields {
            plate: 1,
            ..KeyFields::default()
        };
        let (mut row, mut col) = (None, None);
        for (field, value) in values {
            if field == Field::Any {
                continue;
            }
            if let Err(why) = check_value(field, value) {
                return KeyMatch::Invalid(why);
            }
            match field {
                Field::Dataset => fields.dataset = Some(value.to_string()),
                Field::Experiment => fields.experiment = value.to_string(),
                Field::Well => fields.well = value.to_string(),
                _ => {
                    let Ok(n) = value.parse::<u32>() else {
                        return KeyMatch::Invalid(format!(
                            "{} {value:?} is not a number",
                            field.name()
                        ));
                    };
                    match field {
                        Field::Plate => fields.plate = n,
                        Field::Site | Field::FieldNo => fields.site = n,
                        Field::Row => row = Some(n),
                        Field::Col => col = Some(n),
                        Field::Plane => fields.plane = Some(n),
                        _ => fields.channel = n,
                    }
                }
            }
        }
        if let (Some(r), Some(c)) = (row, col) {
            let (Some(r0), Some(c0)) = (r.checked_sub(1), c.checked_sub(1)) else {
                return KeyMatch::Invalid(format!("row {r} and column {c} count from 1"));
            };
            let (Ok(r0), Ok(c0)) = (usize::try_from(r0), usize::try_from(c0)) else {
                return KeyMatch::Invalid(format!("row {r}, column {c} are out of range"));
            };
            if r0 >= 32 || c0 >= 48 {
                return KeyMatch::Invalid(format!(
                    "row {r}, column {c} is past a 1536-well plate (32 x 48)"
                ));
            }
            fields.well = crate::plate::well_name(r0, c0);
        }
        KeyMatch::Matched(fields)
    }

    /// Build the key for the given values (the inverse of [`LayoutTemplate::match_key`]).
    pub fn render(&self, f: &KeyFields) -> String {
        let (row, col) = crate::plate::well_position(&f.well).unwrap_or((0, 0));
        let number = |n: usize, width: usize| format!("{n:0width$}");
        let mut out = String::new();
        for t in &self.tokens {
            match t {
                Token::Literal(l) => out.push_str(l),
                Token::Field(Field::Dataset, _) => out.push_str(f.dataset.as_deref().unwrap_or("")),
                Token::Field(Field::Experiment, _) => out.push_str(&f.experiment),
                Token::Field(Field::Well, _) => out.push_str(&f.well),
                // Any text matches; a rendered key needs some.
                Token::Field(Field::Any, _) => out.push('0'),
                Token::Field(field, w) => {
                    let n = match field {
                        Field::Plate => f.plate,
                        Field::Site | Field::FieldNo => f.site,
                        Field::Plane => f.plane.unwrap_or(1),
                        Field::Channel => f.channel,
                        Field::Row => u32::try_from(row + 1).unwrap_or(u32::MAX),
                        _ => u32::try_from(col + 1).unwrap_or(u32::MAX),
                    };
                    out.push_str(&number(usize::try_from(n).unwrap_or(usize::MAX), *w));
                }
            }
        }
        out
    }

    /// Whether the layout has a `{dataset}` placeholder.
    pub fn has_dataset(&self) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Field(Field::Dataset, _)))
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
        Some((Token::Field(field, _), rest)) => {
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
#[path = "layout_tests.rs"]
mod tests;
