//! Pictures: a site's composite and channel tiles, contact sheets of many sites, and
//! 16x24 plate heatmaps with a colour bar.

use std::collections::BTreeMap;

use crate::canvas::{Canvas, EMPTY, INK, WHITE, fit, text_width};
use crate::colormap::viridis;
use cellshard_core::palette::Palette;

use crate::data::{BeforeAfter, PlateFormat, SiteImage, row_name, well_position};
use crate::stat::Stat;
use crate::{Error, Result};

/// Channels to draw: 1-based, each within the tensor, each at most once.
pub fn check_channels(channels: &[usize], available: usize) -> Result<()> {
    if channels.is_empty() {
        return Err(Error::Usage("no channels to draw".into()));
    }
    let mut seen = channels.to_vec();
    seen.sort_unstable();
    seen.dedup();
    if seen.len() != channels.len() {
        return Err(Error::Usage(format!(
            "channels {channels:?}: each at most once"
        )));
    }
    if let Some(c) = channels.iter().find(|&&c| c < 1 || c > available) {
        return Err(Error::Usage(format!(
            "channel {c} is outside 1..={available} (the tensor has {available} channels)"
        )));
    }
    Ok(())
}

/// How channel values map to colour intensity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Contrast {
    /// Each channel's fixed display maximum (RxRx1's viewer's for `w1`..`w6`; as
    /// `tensor_thumbnail`).
    #[default]
    Rxrx1,
    /// Each channel's 99.5th percentile of the site at full colour (in a composite of n > 2
    /// channels, at 2/n of full colour).
    Auto,
}

impl Contrast {
    /// Parse `rxrx1` or `auto`.
    pub fn parse(s: &str) -> Result<Contrast> {
        match s {
            "rxrx1" => Ok(Contrast::Rxrx1),
            "auto" => Ok(Contrast::Auto),
            _ => Err(Error::Usage(format!("contrast {s:?}: rxrx1 or auto"))),
        }
    }

    fn maxima(self, site: &SiteImage) -> Result<Vec<f64>> {
        Ok(match self {
            Contrast::Rxrx1 => site.palette.maxima.clone(),
            Contrast::Auto => cellshard_sql::udf::auto_maxima(&site.spec, &site.tensor, 0.995)?,
        })
    }
}

/// Every channel of the tensor.
pub fn all_channels(site: &SiteImage) -> Vec<usize> {
    (1..=site.spec.channels).collect()
}

/// The composite of `channels` at `size` x `size` px.
pub fn composite(
    site: &SiteImage,
    channels: &[usize],
    size: usize,
    contrast: Contrast,
) -> Result<Canvas> {
    check_channels(channels, site.spec.channels)?;
    check_size(site, size)?;
    let mut maxima = contrast.maxima(site)?;
    if contrast == Contrast::Auto {
        // Six colours add up: at 2/n of full colour each, overlapping channels of a dense
        // field do not all clip to white.
        let k = (channels.len() as f64 / 2.0).max(1.0);
        maxima.iter_mut().for_each(|m| *m *= k);
    }
    let rgb = cellshard_sql::udf::composite_with(
        &site.spec,
        &site.tensor,
        size,
        channels,
        &site.palette,
        &maxima,
    )?;
    Ok(Canvas {
        width: size,
        height: size,
        rgb,
    })
}

/// Channel `c` alone in grayscale (the same intensity as its share of the composite).
pub fn channel_tile(site: &SiteImage, c: usize, size: usize, contrast: Contrast) -> Result<Canvas> {
    check_channels(&[c], site.spec.channels)?;
    check_size(site, size)?;
    let maxima = contrast.maxima(site)?;
    let x = cellshard_sql::udf::channel_intensity_with(&site.spec, &site.tensor, c, size, &maxima)?;
    let mut rgb = Vec::with_capacity(size * size * 3);
    for v in x {
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "clamped to 0..=255 first"
        )]
        let g = (v * 255.0).round().clamp(0.0, 255.0) as u8;
        rgb.extend_from_slice(&[g, g, g]);
    }
    Ok(Canvas {
        width: size,
        height: size,
        rgb,
    })
}

fn check_size(site: &SiteImage, size: usize) -> Result<()> {
    let limit = site.spec.height.min(site.spec.width);
    if size < 16 || size > limit {
        return Err(Error::Usage(format!(
            "size {size} px is outside 16..={limit} (the tensor is {}x{})",
            site.spec.height, site.spec.width
        )));
    }
    Ok(())
}

const PAD: usize = 8;
const LINE: usize = 12;

/// Each channel as a labelled grayscale tile, then the composite, four tiles a row.
pub fn site_grid(
    site: &SiteImage,
    channels: &[usize],
    size: usize,
    contrast: Contrast,
) -> Result<Canvas> {
    let mut tiles: Vec<(String, Canvas)> = Vec::new();
    for &c in channels {
        tiles.push((
            site.palette.label(c),
            channel_tile(site, c, size, contrast)?,
        ));
    }
    let names: Vec<String> = channels
        .iter()
        .map(|c| site.palette.names[c - 1].clone())
        .collect();
    tiles.push((
        format!("composite {}", names.join(",")),
        composite(site, channels, size, contrast)?,
    ));
    let per_row = tiles.len().min(4);
    let rows = tiles.len().div_ceil(per_row);
    let header = 2 * LINE + PAD;
    let cell_w = size + PAD;
    let cell_h = size + LINE + PAD;
    let mut c = Canvas::new(PAD + per_row * cell_w, header + rows * cell_h + PAD, WHITE);
    c.text(PAD, PAD, &site.site_id, 1, INK);
    c.text(PAD, PAD + LINE, &site.caption(), 1, INK);
    for (i, (label, tile)) in tiles.iter().enumerate() {
        let x = PAD + (i % per_row) * cell_w;
        let y = header + (i / per_row) * cell_h;
        c.text(x, y, &fit(label, size / 8), 1, INK);
        c.blit(tile, x, y + LINE);
    }
    Ok(c)
}

/// A labelled composite per site (site id, then well and siRNA), up to eight a row.
pub fn contact_sheet(
    sites: &[SiteImage],
    channels: &[usize],
    size: usize,
    contrast: Contrast,
) -> Result<Canvas> {
    if sites.is_empty() {
        return Err(Error::Usage("the query returned no sites to draw".into()));
    }
    for s in sites {
        check_size(s, size)?;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "clamped to 1..=8 first"
    )]
    let per_row = (sites.len() as f64).sqrt().ceil().clamp(1.0, 8.0) as usize;
    let rows = sites.len().div_ceil(per_row);
    let cell_w = size + PAD;
    let cell_h = size + 2 * LINE + PAD;
    let mut c = Canvas::new(PAD + per_row * cell_w, PAD + rows * cell_h, WHITE);
    let chars = size / 8;
    for (i, s) in sites.iter().enumerate() {
        let x = PAD + (i % per_row) * cell_w;
        let y = PAD + (i / per_row) * cell_h;
        c.blit(&composite(s, channels, size, contrast)?, x, y);
        c.text(x, y + size + 2, &fit(&s.site_id, chars), 1, INK);
        c.text(x, y + size + 2 + LINE, &fit(&s.caption(), chars), 1, INK);
    }
    Ok(c)
}

/// Geometry of a heatmap panel.
pub const CELL: usize = 22;
const LEFT: usize = 24;
const TOP: usize = 44;
const BAR_W: usize = 16;

/// One plate's heatmap: a cell per well of the plate's format (96, 384 or 1536 wells, the
/// smallest holding the wells of `values`) coloured by `values` on `range` (viridis; grey
/// where a well has no value), a title, and a colour bar with its ends and middle labelled.
pub fn heatmap(title: &str, values: &BTreeMap<String, f64>, range: (f64, f64)) -> Canvas {
    let format = PlateFormat::containing(values.keys().map(String::as_str));
    heatmap_of(format, title, values, range)
}

/// [`heatmap`] on a given plate format.
pub fn heatmap_of(
    format: PlateFormat,
    title: &str,
    values: &BTreeMap<String, f64>,
    range: (f64, f64),
) -> Canvas {
    // 1536-well plates get smaller cells, and every 4th column a label.
    let cell = cell_side(format);
    let every = if cell < CELL { 4 } else { 1 };
    let mut grid = vec![None; format.wells()];
    for (well, &v) in values {
        if let Some((r, c)) = well_position(well).filter(|_| format.holds(well)) {
            grid[r * format.cols + c] = Some(v);
        }
    }
    let grid_w = format.cols * cell;
    let grid_h = format.rows * cell;
    let label_w = text_width(&format_value(range.1), 1).max(text_width(&format_value(range.0), 1));
    // A long title widens the panel up to 1024 px and is cut past that.
    let width = (LEFT + grid_w + 2 * PAD + BAR_W + PAD + label_w.min(12 * 8) + PAD)
        .max((text_width(title, 1) + 2 * PAD).min(1024));
    let mut c = Canvas::new(width, TOP + grid_h + 2 * PAD, WHITE);
    c.text(PAD, PAD, &fit(title, (width - 2 * PAD) / 8), 1, INK);
    for col in (0..format.cols).filter(|c| c % every == 0) {
        let label = format!("{}", col + 1);
        let x = (LEFT + col * cell + cell / 2).saturating_sub(text_width(&label, 1) / 2);
        c.text(x, TOP - LINE, &label, 1, INK);
    }
    for row in 0..format.rows {
        let label = row_name(row);
        let y = TOP + row * cell + cell.saturating_sub(8) / 2;
        c.text(PAD.saturating_sub(4 * (label.len() - 1)), y, &label, 1, INK);
        for col in 0..format.cols {
            let colour = grid[row * format.cols + col].map_or(EMPTY, |v| viridis(scaled(v, range)));
            c.fill(
                LEFT + col * cell + 1,
                TOP + row * cell + 1,
                cell - 2,
                cell - 2,
                colour,
            );
        }
    }
    // Wells past 1536 have no cell and are not drawn (see `outside`).
    let bx = LEFT + grid_w + 2 * PAD;
    for y in 0..grid_h {
        let t = 1.0 - y as f64 / (grid_h - 1) as f64;
        c.fill(bx, TOP + y, BAR_W, 1, viridis(t));
    }
    c.outline(bx, TOP, BAR_W, grid_h, INK);
    let lx = bx + BAR_W + 4;
    c.text(lx, TOP, &format_value(range.1), 1, INK);
    c.text(
        lx,
        TOP + grid_h / 2 - 4,
        &format_value((range.0 + range.1) / 2.0),
        1,
        INK,
    );
    c.text(lx, TOP + grid_h - 8, &format_value(range.0), 1, INK);
    c
}

/// Wells in `values` that the heatmap cannot place (not a well name, or past 1536 wells).
pub fn outside(values: &BTreeMap<String, f64>) -> usize {
    let format = PlateFormat::containing(values.keys().map(String::as_str));
    values.keys().filter(|w| !format.holds(w)).count()
}

/// Two panels side by side (raw, then normalized), each with its own title and bar.
pub fn side_by_side(left: &Canvas, right: &Canvas) -> Canvas {
    let mut c = Canvas::new(
        left.width + right.width,
        left.height.max(right.height),
        WHITE,
    );
    c.blit(left, 0, 0);
    c.blit(right, left.width, 0);
    c
}

/// `v` on 0..1 of `range` (0.5 when the range is a single value).
pub fn scaled(v: f64, (lo, hi): (f64, f64)) -> f64 {
    if hi > lo { (v - lo) / (hi - lo) } else { 0.5 }
}

/// A short number for labels.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-2..1e5).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// The range of `values` (0..1 when empty).
pub fn range_of(values: &BTreeMap<String, f64>) -> (f64, f64) {
    let mut it = values.values().copied().filter(|v| v.is_finite());
    match it.next() {
        Some(f) => it.fold((f, f), |(lo, hi), v| (lo.min(v), hi.max(v))),
        None => (0.0, 1.0),
    }
}

/// The (x, y, w, h) of a well's cell in a heatmap from [`heatmap`].
pub fn well_cell(row: usize, col: usize) -> (usize, usize, usize, usize) {
    well_cell_of(PlateFormat::W384, row, col)
}

/// [`well_cell`] on a heatmap of `format`.
pub fn well_cell_of(format: PlateFormat, row: usize, col: usize) -> (usize, usize, usize, usize) {
    let cell = cell_side(format);
    (LEFT + col * cell, TOP + row * cell, cell, cell)
}

/// Side of a well's cell: smaller on a 1536-well plate, which gets a label every 4th column.
fn cell_side(format: PlateFormat) -> usize {
    if format.cols > 24 { 12 } else { CELL }
}

/// `1,2,5` -> [1, 2, 5].
pub fn parse_channels(s: &str, palette: &Palette) -> Result<Vec<usize>> {
    s.split(',')
        .map(|c| {
            palette
                .resolve(c)
                .map_err(|why| Error::Usage(format!("channels {s:?}: {why}")))
        })
        .collect()
}

/// One plate's heatmap of `stat` (on the plate's own range), from [`data::plate_map`].
///
/// [`data::plate_map`]: crate::data::plate_map
pub fn plate(
    experiment: &str,
    plate: i32,
    stat: Stat,
    label: &str,
    values: &BTreeMap<String, f64>,
) -> Canvas {
    let mut title = format!("{experiment} plate {plate}: {}", stat.title(label));
    let n = outside(values);
    if n > 0 {
        title.push_str(&format!(" ({n} wells outside the plate format not drawn)"));
    }
    heatmap(&title, values, range_of(values))
}

/// The raw crop means of `channel` beside the stored (normalized) means, each on the range
/// of its statistic over every plate of the experiment, so a plate effect shows as a
/// shifted plate on the left and is gone on the right.
pub fn before_after(experiment: &str, plate: i32, label: &str, d: &BeforeAfter) -> Canvas {
    let (rv, nv) = (d.raw.plate(plate), d.norm.plate(plate));
    let plates = d.plates;
    let mean = |v: &BTreeMap<String, f64>| v.values().sum::<f64>() / v.len().max(1) as f64;
    let left = heatmap(
        &format!(
            "before: raw crop mean, {label} (plate mean {}; range of {plates} plates)",
            format_value(mean(&rv))
        ),
        &rv,
        d.raw.range().unwrap_or((0.0, 1.0)),
    );
    let right = heatmap(
        &format!(
            "after: normalized mean, {label} (plate mean {}; range of {plates} plates)",
            format_value(mean(&nv))
        ),
        &nv,
        d.norm.range().unwrap_or((0.0, 1.0)),
    );
    let mut c = Canvas::new(left.width + right.width, left.height + 2 * LINE, WHITE);
    c.text(
        PAD,
        PAD,
        &format!("{experiment} plate {plate}: per-plate normalization"),
        1,
        INK,
    );
    c.blit(&side_by_side(&left, &right), 0, 2 * LINE);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::well_name;

    #[test]
    fn heatmap_colours_wells_by_value_and_leaves_the_rest_grey() {
        let values = BTreeMap::from([("A01".to_string(), 0.0), ("P24".to_string(), 10.0)]);
        let c = heatmap("t", &values, (0.0, 10.0));
        let centre = |r, col| {
            let (x, y, w, h) = well_cell(r, col);
            c.get(x + w / 2, y + h / 2)
        };
        assert_eq!(centre(0, 0), viridis(0.0));
        assert_eq!(centre(15, 23), viridis(1.0));
        assert_eq!(centre(1, 1), EMPTY);
        assert_eq!(format_value(1823.2), "1823");
        assert_eq!(format_value(0.5), "0.50");
        assert_eq!(scaled(5.0, (0.0, 10.0)), 0.5);
        assert!(check_channels(&[1, 2, 5], 6).is_ok());
        assert!(check_channels(&[1, 1], 6).is_err());
        assert!(check_channels(&[1, 2, 3, 4, 5, 6, 1], 6).is_err());
        // Every channel of a tensor is drawable (colours are not limited to six).
        assert!(check_channels(&[7], 8).is_ok());
        assert!(check_channels(&[9], 8).is_err());
        // A long title is cut, not allowed to widen the picture without bound.
        let long = "x".repeat(100_000);
        assert!(heatmap(&long, &values, (0.0, 1.0)).width <= 1024);
    }

    #[test]
    fn a_1536_well_plate_is_a_32_by_48_heatmap() {
        // Every well of an RxRx3 plate, valued by its position.
        let mut values = BTreeMap::new();
        for r in 0..32 {
            for c in 0..48 {
                values.insert(well_name(r, c), (r * 48 + c) as f64);
            }
        }
        let range = (0.0, 1535.0);
        let c = heatmap("rxrx3", &values, range);
        let f = PlateFormat::W1536;
        let (x, y, w, h) = well_cell_of(f, 31, 47);
        assert!(x + w <= c.width && y + h <= c.height);
        for (r, col) in [(0, 0), (29, 26), (31, 47), (16, 24)] {
            let (x, y, w, h) = well_cell_of(f, r, col);
            let v = (r * 48 + col) as f64;
            assert_eq!(
                c.get(x + w / 2, y + h / 2),
                viridis(scaled(v, range)),
                "{r},{col}"
            );
        }
        assert_eq!(outside(&values), 0);
        // The 384-well grid is unchanged, and a 96-well plate gets its own.
        assert_eq!(well_cell_of(PlateFormat::W384, 1, 1), well_cell(1, 1));
        let small = BTreeMap::from([("H12".to_string(), 1.0)]);
        assert!(
            heatmap("96", &small, (0.0, 1.0)).height
                < heatmap(
                    "384",
                    &BTreeMap::from([("P24".to_string(), 1.0)]),
                    (0.0, 1.0)
                )
                .height
        );
    }
}
