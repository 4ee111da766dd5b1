//! Pictures as PNG: a plate's heatmap (or its before/after pair) and a site's composite or
//! channel tile. A failure answers its status with the cause as text.

use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::plate::PlateParams;
use super::{Shared, failure};
use crate::data;
use crate::render;
use crate::{Error, Result};

/// The heatmap PNG of `stat` (or the before/after pair).
pub(super) async fn plate_image(
    State(v): State<Shared>,
    Path((experiment, plate)): Path<(String, i32)>,
    Query(p): Query<PlateParams>,
) -> Response {
    let (stat, channel) = match p.parse(v.channels()) {
        Ok(x) => x,
        Err(e) => return failure(&e, e.to_string()),
    };
    let before_after = p.before_after.is_some_and(|s| s != "0");
    let label = v.palette().label(channel);
    let s = v.session.clone();
    let png = v
        .run(async move {
            let canvas = if before_after {
                let d = data::before_after(&s.ctx, &experiment, plate, channel).await?;
                render::before_after(&experiment, plate, &label, &d)
            } else {
                let values = data::plate_map(&s.ctx, &experiment, plate, stat, channel).await?;
                render::plate(&experiment, plate, stat, &label, &values)
            };
            canvas.png()
        })
        .await;
    png_response(png)
}

fn png_response(png: Result<Vec<u8>>) -> Response {
    match png {
        Ok(b) => ([(header::CONTENT_TYPE, "image/png")], b).into_response(),
        Err(e) => failure(&e, e.to_string()),
    }
}

#[derive(Deserialize)]
pub(super) struct SiteImageParams {
    channels: Option<String>,
    size: Option<usize>,
    gray: Option<String>,
    contrast: Option<String>,
}

/// A site's composite, or one channel in grayscale (`gray=1`, one channel).
pub(super) async fn site_image(
    State(v): State<Shared>,
    Path(site_id): Path<String>,
    Query(p): Query<SiteImageParams>,
) -> Response {
    let s = v.session.clone();
    let png = v
        .run(async move {
            let site = data::site(&s, &site_id).await?;
            let channels = match &p.channels {
                Some(c) => render::parse_channels(c, &site.palette)?,
                None => render::all_channels(&site),
            };
            let size = p.size.unwrap_or(site.spec.height.min(site.spec.width));
            let contrast = render::Contrast::parse(p.contrast.as_deref().unwrap_or("rxrx1"))?;
            let c = if p.gray.is_some_and(|g| g != "0") {
                let [c] = channels[..] else {
                    return Err(Error::Usage("gray=1 draws exactly one channel".into()));
                };
                render::channel_tile(&site, c, size, contrast)?
            } else {
                render::composite(&site, &channels, size, contrast)?
            };
            c.png()
        })
        .await;
    png_response(png)
}
