//! Center crop: keep the `size` x `size` window at offset `((W - size) / 2, (H - size) / 2)`
//! (integer division), e.g. (256, 256) for a 1024 x 1024 image and a 512 crop.

use crate::Plane;

/// Top-left corner of the centred window.
pub fn crop_offset(width: u32, height: u32, size: u32) -> (u32, u32) {
    ((width - size) / 2, (height - size) / 2)
}

/// Crop a whole plane (the straightforward path). `size` must fit.
pub fn center_crop(p: &Plane, size: u32) -> Plane {
    let (ox, oy) = crop_offset(p.width, p.height, size);
    let mut data = Vec::with_capacity(size as usize * size as usize);
    for y in oy..oy + size {
        let start = y as usize * p.width as usize + ox as usize;
        data.extend_from_slice(&p.data[start..start + size as usize]);
    }
    Plane::new(size, size, data)
}

/// `center_crop(downsample(plane, factor), crop)`: the stages after a full decode (the
/// path of images decoded whole: interlaced PNGs, TIFFs). The crop must fit.
pub fn downsample_then_crop(plane: Plane, factor: u32, crop: Option<u32>) -> Plane {
    let d = if factor > 1 {
        crate::downsample::downsample(&plane, factor)
    } else {
        plane
    };
    match crop {
        Some(c) => center_crop(&d, c),
        None => d,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets() {
        assert_eq!(crop_offset(1024, 1024, 512), (256, 256));
        assert_eq!(crop_offset(1025, 1024, 512), (256, 256));
        assert_eq!(crop_offset(512, 512, 512), (0, 0));
    }

    #[test]
    fn keeps_the_centre() {
        let p = Plane::new(4, 4, (0..16).collect());
        assert_eq!(center_crop(&p, 2).data, vec![5, 6, 9, 10]);
        assert_eq!(center_crop(&p, 4), p);
    }
}
