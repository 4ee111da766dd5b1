//! An RGB raster with rectangles, blits and 8x8 bitmap text, encoded as PNG.

/// Row-major RGB, 3 bytes a pixel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Canvas {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

/// Colours used for backgrounds and text.
pub const WHITE: [u8; 3] = [255, 255, 255];
/// Text.
pub const INK: [u8; 3] = [20, 20, 20];
/// Wells with no data.
pub const EMPTY: [u8; 3] = [215, 215, 215];

impl Canvas {
    /// A canvas filled with `fill`.
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        (0..width * height).for_each(|_| rgb.extend_from_slice(&fill));
        Canvas { width, height, rgb }
    }

    /// Set one pixel (ignored outside the canvas).
    pub fn put(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 3;
            self.rgb[i..i + 3].copy_from_slice(&c);
        }
    }

    /// The pixel at (x, y).
    pub fn get(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Fill a rectangle.
    pub fn fill(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                self.put(xx, yy, c);
            }
        }
    }

    /// A one-pixel rectangle outline.
    pub fn outline(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u8; 3]) {
        self.fill(x, y, w, 1, c);
        self.fill(x, y + h.saturating_sub(1), w, 1, c);
        self.fill(x, y, 1, h, c);
        self.fill(x + w.saturating_sub(1), y, 1, h, c);
    }

    /// Copy `src` with its top-left corner at (x, y).
    pub fn blit(&mut self, src: &Canvas, x: usize, y: usize) {
        for sy in 0..src.height {
            for sx in 0..src.width {
                self.put(x + sx, y + sy, src.get(sx, sy));
            }
        }
    }

    /// Draw `text` with its top-left corner at (x, y), each font pixel `scale` pixels wide;
    /// characters outside the font draw as `?`. Returns the width drawn.
    pub fn text(&mut self, x: usize, y: usize, text: &str, scale: usize, c: [u8; 3]) -> usize {
        for (i, ch) in text.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[if ch.is_ascii() {
                ch as usize
            } else {
                '?' as usize
            }];
            for (gy, row) in glyph.iter().enumerate() {
                for gx in 0..8 {
                    if row & (1 << gx) != 0 {
                        self.fill(x + (i * 8 + gx) * scale, y + gy * scale, scale, scale, c);
                    }
                }
            }
        }
        text_width(text, scale)
    }

    /// Encode as an 8-bit RGB PNG.
    pub fn png(&self) -> crate::Result<Vec<u8>> {
        Ok(cellshard_sql::udf::rgb_png(
            self.width,
            self.height,
            &self.rgb,
        )?)
    }
}

/// Width in pixels of `text` at `scale`.
pub fn text_width(text: &str, scale: usize) -> usize {
    text.chars().count() * 8 * scale
}

/// `text` cut to at most `max` characters (with a trailing `~` when cut).
pub fn fit(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
    s.push('~');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_glyph_pixels_only_inside_its_box() {
        let mut c = Canvas::new(40, 10, WHITE);
        let w = c.text(1, 1, "I", 1, INK);
        assert_eq!(w, 8);
        let inked: Vec<(usize, usize)> = (0..10)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| c.get(x, y) == INK)
            .collect();
        assert!(!inked.is_empty());
        assert!(
            inked
                .iter()
                .all(|&(x, y)| (1..9).contains(&x) && (1..9).contains(&y))
        );
        assert_eq!(fit("HUVEC-01_1_B02_1", 8), "HUVEC-0~");
    }
}
