//! A plate's page: its heatmap, its wells as links, a statistic and channel selector.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::Shared;
use super::html::{enc, esc};

use crate::data::{self, PlateFormat, literal, row_name, well_name, well_position};
use crate::render;
use crate::stat::{STATS, Stat};
use crate::{Error, Result};

#[derive(Deserialize)]
pub(super) struct PlateParams {
    stat: Option<String>,
    channel: Option<usize>,
    pub(super) before_after: Option<String>,
}

impl PlateParams {
    /// The statistic and channel, the channel within the store's `channels`.
    pub(super) fn parse(&self, channels: usize) -> Result<(Stat, usize)> {
        let stat = Stat::parse(self.stat.as_deref().unwrap_or("mean"))?;
        let channel = self.channel.unwrap_or(1);
        data::check_channel(channel, channels)?;
        Ok((stat, channel))
    }
}

/// A plate's heatmap (PNG), its wells as links, and a statistic / channel selector.
pub(super) async fn plate_page(
    State(v): State<Shared>,
    Path((experiment, plate)): Path<(String, i32)>,
    Query(p): Query<PlateParams>,
) -> Response {
    let palette = v.palette();
    let title = format!("Plate {experiment}/{plate}");
    let (stat, channel) = match p.parse(v.channels()) {
        Ok(x) => x,
        Err(e) => return v.fail(&title, &e),
    };
    let s = v.session.clone();
    let (e2, stat2) = (experiment.clone(), stat);
    let got = v
        .run(async move {
            let values = data::plate_values(&s.ctx, &e2, Some(plate), stat2, channel).await?.plate(plate);
            let firsts = data::collect(
                &s.ctx,
                &format!(
                    "SELECT well, min(site_id) AS site_id FROM sites WHERE experiment = {} AND plate = {plate} GROUP BY well",
                    literal(&e2)
                ),
                None,
            )
            .await?;
            Ok((values, firsts))
        })
        .await;
    let (values, firsts) = match got {
        Ok(x) => x,
        Err(e) => return v.fail(&title, &e),
    };
    if values.is_empty() && firsts.iter().all(|b| b.num_rows() == 0) {
        return v.fail(
            &title,
            &Error::NotFound(format!(
                "no sites of plate {plate} of {experiment} in the store"
            )),
        );
    }
    let mut site_of: BTreeMap<String, String> = BTreeMap::new();
    for b in &firsts {
        let w = arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8);
        let s = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8);
        if let (Ok(w), Ok(s)) = (w, s) {
            use arrow::array::{Array, AsArray};
            let (w, s) = (w.as_string::<i32>(), s.as_string::<i32>());
            for i in 0..w.len() {
                site_of.insert(w.value(i).to_string(), s.value(i).to_string());
            }
        }
    }
    let range = render::range_of(&values);
    let mut body = String::from(
        r#"<form class="inline" method="get">Statistic <select name="stat" data-autosubmit>"#,
    );
    for s in STATS {
        body.push_str(&format!(
            r#"<option value="{s}"{}>{s}</option>"#,
            if s == stat.name() { " selected" } else { "" }
        ));
    }
    body.push_str(r#"</select> Channel <select name="channel" data-autosubmit>"#);
    for c in 1..=v.channels() {
        body.push_str(&format!(
            r#"<option value="{c}"{}>{}</option>"#,
            if c == channel { " selected" } else { "" },
            esc(&palette.label(c))
        ));
    }
    body.push_str(r#"</select><noscript><button>Show</button></noscript></form>"#);
    let q = format!("stat={}&amp;channel={channel}", stat.name());
    body.push_str(&format!(
        r#"<p><img id="heatmap" alt="heatmap" src="/img/plate/{}/{plate}?{q}"></p>"#,
        enc(&experiment)
    ));
    body.push_str(&format!(
        r#"<h2>Wells</h2><p class="note">{}: {} wells with a value, {} to {}. Click a well for its first site.</p><table class="plate" id="wells"><tr><th></th>"#,
        esc(&stat.title(&palette.label(channel))),
        values.len(),
        render::format_value(range.0),
        render::format_value(range.1)
    ));
    // The plate's wells by grid position, whatever their names' padding (B2, B02).
    let format = PlateFormat::containing(values.keys().chain(site_of.keys()).map(String::as_str));
    let mut by_position: BTreeMap<(usize, usize), String> = BTreeMap::new();
    for w in values.keys().chain(site_of.keys()) {
        if let Some(p) = well_position(w).filter(|_| format.holds(w)) {
            by_position.insert(p, w.clone());
        }
    }
    for c in 0..format.cols {
        body.push_str(&format!("<th>{}</th>", c + 1));
    }
    body.push_str("</tr>");
    for r in 0..format.rows {
        body.push_str(&format!("<tr><th>{}</th>", row_name(r)));
        for c in 0..format.cols {
            let well = by_position
                .get(&(r, c))
                .cloned()
                .unwrap_or_else(|| well_name(r, c));
            match (values.get(&well), site_of.get(&well)) {
                (value, Some(site)) => {
                    let colour = value.map_or(crate::canvas::EMPTY, |&x| {
                        crate::colormap::viridis(render::scaled(x, range))
                    });
                    let tip = value.map_or("no value".to_string(), |x| render::format_value(*x));
                    body.push_str(&format!(
                        r#"<td style="background:{}"><a class="well" data-well="{well}" href="/site/{}" title="{well}: {}"></a></td>"#,
                        crate::colormap::hex(colour),
                        enc(site),
                        esc(&tip)
                    ));
                }
                (Some(x), None) => body.push_str(&format!(
                    r#"<td style="background:{}" title="{well}: {}"></td>"#,
                    crate::colormap::hex(crate::colormap::viridis(render::scaled(*x, range))),
                    render::format_value(*x)
                )),
                (None, None) => body.push_str(r#"<td class="empty"></td>"#),
            }
        }
        body.push_str("</tr>");
    }
    body.push_str("</table>");
    if matches!(stat, Stat::Qc("mean") | Stat::RawMean) {
        body.push_str(&format!(
            r#"<h2>Before and after per-plate normalization</h2><p class="note">Raw crop means and stored means of {} on the colour ranges of every plate of {} (a plate effect shows as a whole plate shifted on the left, and is gone on the right).</p><p><img id="before-after" alt="before and after normalization" src="/img/plate/{}/{plate}?stat=mean&amp;channel={channel}&amp;before_after=1"></p>"#,
            esc(&palette.label(channel)),
            esc(&experiment),
            enc(&experiment)
        ));
    }
    v.html(&title, &body)
}
