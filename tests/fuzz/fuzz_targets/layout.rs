//! Any key against the RxRx1 layout: never a panic, and a match renders back to a key
//! that matches to the same fields.
#![no_main]

use cellshard_core::layout::{KeyMatch, LayoutTemplate, RXRX1_LAYOUT};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(key) = std::str::from_utf8(data) else { return };
    let layout = LayoutTemplate::parse(RXRX1_LAYOUT).expect("the built-in layout parses");
    if let KeyMatch::Matched(fields) = layout.match_key(key) {
        let again = layout.render(&fields);
        assert_eq!(layout.match_key(&again), KeyMatch::Matched(fields));
    }
    let _ = LayoutTemplate::parse(key);
});
