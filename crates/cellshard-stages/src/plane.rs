//! A single-channel image of u16 samples, row-major.

/// One channel of one site, row-major, 8-bit input widened to u16.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plane {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` samples.
    pub data: Vec<u16>,
}

impl Plane {
    /// A plane from samples; `data.len()` must equal `width * height`.
    pub fn new(width: u32, height: u32, data: Vec<u16>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize);
        Self {
            width,
            height,
            data,
        }
    }

    /// Sample at (x, y).
    pub fn get(&self, x: u32, y: u32) -> u16 {
        self.data[y as usize * self.width as usize + x as usize]
    }
}
