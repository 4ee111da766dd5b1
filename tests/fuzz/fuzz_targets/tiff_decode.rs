//! Any bytes through the TIFF decoder (as a TIFF and through `auto`): never a panic, never
//! an allocation beyond the header guard, and the transform agrees with the full decode.
#![no_main]

use cellshard_core::ImageFormat;
use cellshard_stages::crop::center_crop;
use cellshard_stages::downsample::downsample;
use cellshard_stages::image::decode_transformed;
use cellshard_stages::tiff::decode_full;
use cellshard_stages::DecodeSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for bit_depth in [8, 16] {
        let spec = DecodeSpec { bit_depth, width: None, height: None, max_pixels: 1 << 20 };
        let fast = decode_transformed(data, "x.tif", ImageFormat::Auto, &spec, 2, Some(4));
        if let Ok(full) = decode_full(data, &spec) {
            if full.width / 2 >= 4 && full.height / 2 >= 4 {
                let expect = center_crop(&downsample(&full, 2), 4);
                assert_eq!(fast.as_ref().ok(), Some(&expect));
            }
        }
    }
});
