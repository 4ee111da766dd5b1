//! Server-rendered HTML: escaping, the page frame, and result tables with thumbnails.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use base64::Engine;
use cellshard_sql::udf::TensorSpec;

use crate::Result;
use crate::data::SiteImage;

/// Escape text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Percent-encode a path segment or query value.
pub fn enc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

/// The page frame: navigation, the store's name and version, then `body`.
pub fn page(title: &str, store: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{t} · cellshard</title>
<link rel="stylesheet" href="/assets/style.css"><script src="/assets/app.js"></script></head>
<body><header><a href="/">cellshard</a><a href="/">Store</a><a href="/sql">SQL</a><span class="store">{s}</span></header>
<main><h1>{t}</h1>
{body}
</main></body></html>"#,
        t = esc(title),
        s = esc(store),
    )
}

/// An error box.
pub fn error(message: &str) -> String {
    format!(r#"<div class="error" id="error">{}</div>"#, esc(message))
}

/// A data URI of PNG bytes.
pub fn png_uri(png: &[u8]) -> String {
    format!(
        "data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(png)
    )
}

fn is_png(b: &[u8]) -> bool {
    b.starts_with(b"\x89PNG\r\n\x1a\n")
}

/// Rows `skip..skip+take` of `batches` as an HTML table. A tensor column (shape metadata,
/// or the store's shape for a column named `tensor`) shows a thumbnail; PNG bytes (from
/// `tensor_thumbnail`) show as images; `site_id` links to its site page; `plate` links to
/// its plate page where the row also has `experiment`.
pub fn table(
    batches: &[RecordBatch],
    skip: usize,
    take: usize,
    store_tensor: Option<TensorSpec>,
) -> Result<String> {
    let Some(first) = batches.first() else {
        return Ok(r#"<p class="note">No rows.</p>"#.into());
    };
    let schema = first.schema();
    let mut o = String::from(r#"<table class="data"><thead><tr>"#);
    for f in schema.fields() {
        o.push_str(&format!("<th>{}</th>", esc(f.name())));
    }
    o.push_str("</tr></thead><tbody>");
    let opts = FormatOptions::default().with_null("NULL");
    let (mut seen, mut shown) = (0usize, 0usize);
    for b in batches {
        if shown >= take {
            break;
        }
        let n = b.num_rows();
        if seen + n <= skip {
            seen += n;
            continue;
        }
        let fmts = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        let col = |name: &str| schema.index_of(name).ok();
        let (site_col, exp_col, plate_col) = (col("site_id"), col("experiment"), col("plate"));
        for i in skip.saturating_sub(seen)..n {
            if shown >= take {
                break;
            }
            shown += 1;
            o.push_str("<tr>");
            for (j, f) in schema.fields().iter().enumerate() {
                let a = b.column(j);
                if a.is_null(i) {
                    o.push_str(r#"<td class="null">NULL</td>"#);
                    continue;
                }
                let text = fmts[j].value(i).to_string();
                let cell = match a.data_type() {
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                        let bytes = binary_value(a.as_ref(), i);
                        let spec = TensorSpec::from_field(f).or(
                            if f.name() == cellshard_store::schema::TENSOR {
                                store_tensor
                            } else {
                                None
                            },
                        );
                        thumb_cell(&bytes, spec)
                    }
                    _ if Some(j) == site_col => {
                        format!(r#"<a href="/site/{}">{}</a>"#, enc(&text), esc(&text))
                    }
                    _ if Some(j) == plate_col
                        && exp_col.is_some_and(|e| b.column(e).is_valid(i)) =>
                    {
                        let e = fmts[exp_col.unwrap_or(j)].value(i).to_string();
                        format!(
                            r#"<a href="/plate/{}/{}">{}</a>"#,
                            enc(&e),
                            enc(&text),
                            esc(&text)
                        )
                    }
                    dt if dt.is_numeric() => {
                        o.push_str(&format!(r#"<td class="num">{}</td>"#, esc(&text)));
                        continue;
                    }
                    _ => esc(&text),
                };
                o.push_str(&format!("<td>{cell}</td>"));
            }
            o.push_str("</tr>");
        }
        seen += n;
    }
    o.push_str("</tbody></table>");
    Ok(o)
}

/// The first row of `batches` as a two-column (field, value) table.
pub fn record(batches: &[RecordBatch]) -> Result<String> {
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(r#"<p class="note">No rows.</p>"#.into());
    };
    let opts = FormatOptions::default().with_null("NULL");
    let mut o = String::from(r#"<table class="data record">"#);
    for (f, c) in b.schema().fields().iter().zip(b.columns()) {
        let v = ArrayFormatter::try_new(c.as_ref(), &opts)?
            .value(0)
            .to_string();
        o.push_str(&format!(
            "<tr><th>{}</th><td>{}</td></tr>",
            esc(f.name()),
            esc(&v)
        ));
    }
    o.push_str("</table>");
    Ok(o)
}

fn binary_value(a: &dyn Array, i: usize) -> Vec<u8> {
    match a.data_type() {
        DataType::Binary => a.as_binary::<i32>().value(i).to_vec(),
        DataType::LargeBinary => a.as_binary::<i64>().value(i).to_vec(),
        DataType::BinaryView => a.as_binary_view().value(i).to_vec(),
        _ => Vec::new(),
    }
}

fn thumb_cell(bytes: &[u8], spec: Option<TensorSpec>) -> String {
    if is_png(bytes) {
        return format!(
            r#"<img class="thumb" alt="image" src="{}">"#,
            png_uri(bytes)
        );
    }
    if let Some(spec) = spec {
        let site = SiteImage {
            site_id: String::new(),
            well: None,
            sirna_id: None,
            well_type: None,
            spec,
            tensor: bytes.to_vec(),
            palette: std::sync::Arc::new(cellshard_core::palette::Palette::new(spec.channels, &[])),
        };
        let size = 64.min(spec.height.min(spec.width));
        let channels = crate::render::all_channels(&site);
        if let Ok(png) =
            crate::render::composite(&site, &channels, size, crate::render::Contrast::Rxrx1)
                .and_then(|c| c.png())
        {
            return format!(
                r#"<img class="thumb" alt="tensor" src="{}">"#,
                png_uri(&png)
            );
        }
    }
    format!("&lt;{} bytes&gt;", bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(enc("HUVEC-01_1_B02_1"), "HUVEC-01_1_B02_1");
        assert_eq!(enc("a b/c"), "a%20b%2Fc");
    }
}
