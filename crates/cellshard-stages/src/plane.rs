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

    /// The samples as little-endian bytes (the spill format): borrowed, with no copy, on a
    /// little-endian host.
    pub fn le_bytes(&self) -> std::borrow::Cow<'_, [u8]> {
        if cfg!(target_endian = "little") {
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(&self.data))
        } else {
            let mut out = Vec::with_capacity(self.data.len() * 2);
            self.extend_le_bytes(&mut out);
            std::borrow::Cow::Owned(out)
        }
    }

    /// A `width x height` plane whose little-endian sample bytes `read` fills: straight into
    /// the samples, with no copy, on a little-endian host.
    pub fn read_le<E>(
        width: u32,
        height: u32,
        read: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Self, E> {
        let n = width as usize * height as usize;
        if cfg!(target_endian = "little") {
            let mut data = vec![0u16; n];
            read(bytemuck::cast_slice_mut(&mut data))?;
            Ok(Self::new(width, height, data))
        } else {
            let mut bytes = vec![0u8; n * 2];
            read(&mut bytes)?;
            Ok(Self::from_le_bytes(width, height, &bytes))
        }
    }

    /// Append the samples to `out` as little-endian bytes (the spill format; here, in the
    /// optimised pixel crate, because it runs once per sample of every site).
    pub fn extend_le_bytes(&self, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + self.data.len() * 2, 0);
        for (o, v) in out[start..].chunks_exact_mut(2).zip(&self.data) {
            o.copy_from_slice(&v.to_le_bytes());
        }
    }

    /// A plane from little-endian bytes (`width * height * 2` of them).
    pub fn from_le_bytes(width: u32, height: u32, bytes: &[u8]) -> Self {
        let data = bytes
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect();
        Self::new(width, height, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn le_bytes_round_trip() {
        let p = Plane::new(3, 2, vec![0, 1, 255, 256, 65535, 4660]);
        let mut bytes = vec![9u8];
        p.extend_le_bytes(&mut bytes);
        assert_eq!(bytes[1..5], [0, 0, 1, 0]);
        assert_eq!(Plane::from_le_bytes(3, 2, &bytes[1..]), p);
        assert_eq!(p.le_bytes().as_ref(), &bytes[1..]);
        let back = Plane::read_le(3, 2, |b: &mut [u8]| {
            b.copy_from_slice(&bytes[1..]);
            Ok::<_, ()>(())
        });
        assert_eq!(back, Ok(p));
        assert_eq!(Plane::read_le(3, 2, |_| Err("no")), Err("no"));
    }
}
