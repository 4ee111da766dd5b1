//! How channels are drawn and named for people: a colour and a display maximum per channel,
//! from the channel's name. RxRx1's `w1`..`w6` keep rxrx1-utils' colours and maxima; Cell
//! Painting stain names (`DNA`, `ER`, `RNA`, `AGP`, `Mito`, JUMP's and CellProfiler's)
//! get the colours the field draws them in; other channels take the next unused colour.

use crate::rxrx1::{DISPLAY_MAX, STAINS, VIEWER_RGB};

/// Display maximum of a named channel: the stored values of a percentile-normalized store
/// spread over 0..255, so most of a channel's range shows.
const NAMED_MAX: f64 = 160.0;

const BLUE: [f64; 3] = [19.0, 0.0, 249.0];
const GREEN: [f64; 3] = [42.0, 255.0, 31.0];
const RED: [f64; 3] = [255.0, 0.0, 25.0];
const CYAN: [f64; 3] = [45.0, 255.0, 252.0];
const MAGENTA: [f64; 3] = [250.0, 0.0, 253.0];
const YELLOW: [f64; 3] = [254.0, 255.0, 40.0];
const ORANGE: [f64; 3] = [255.0, 140.0, 0.0];
const GRAY: [f64; 3] = [160.0, 160.0, 160.0];

/// The colours channels without a known stain take, in order.
const CYCLE: [[f64; 3]; 8] = [BLUE, GREEN, RED, CYAN, MAGENTA, YELLOW, ORANGE, GRAY];

/// The channels of a store as the viewer, `render` and `tensor_thumbnail` draw them.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// Channel names in stacking order (`w1`.. when the store names none).
    pub names: Vec<String>,
    /// RGB colour of each channel on a 0..255 scale.
    pub colours: Vec<[f64; 3]>,
    /// Display maximum of each channel on the 0..255 display scale.
    pub maxima: Vec<f64>,
}

/// The colour a stain name is drawn in, if it is a known one.
fn stain_colour(name: &str) -> Option<[f64; 3]> {
    let n = name.to_ascii_lowercase();
    let has = |keys: &[&str]| keys.iter().any(|k| n.contains(k));
    Some(if has(&["dna", "hoechst", "dapi", "nucle"]) {
        BLUE
    } else if has(&["mito"]) {
        MAGENTA
    } else if has(&["rna", "syto"]) {
        CYAN
    } else if n == "er" || has(&["cona", "concanavalin", "reticulum"]) {
        GREEN
    } else if has(&["agp", "actin", "phalloidin"]) {
        RED
    } else if has(&["golgi", "wga", "membrane"]) {
        YELLOW
    } else if has(&["bright", "phase"]) || n == "bf" {
        GRAY
    } else {
        return None;
    })
}

/// The index of the DNA (nuclear stain) channel among `names`: the first named like one
/// (`DNA`, `Hoechst`, `DAPI`, ...), else the first channel (RxRx1's `w1` is Hoechst).
pub fn dna_channel(names: &[String]) -> usize {
    names
        .iter()
        .position(|n| stain_colour(n) == Some(BLUE))
        .unwrap_or(0)
}

impl Palette {
    /// The palette of `count` channels named `names` (empty or short: `w{c}`).
    pub fn new(count: usize, names: &[String]) -> Palette {
        let names: Vec<String> = (0..count)
            .map(|i| {
                names
                    .get(i)
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| format!("w{}", i + 1))
            })
            .collect();
        let mut colours = Vec::with_capacity(count);
        let mut maxima = Vec::with_capacity(count);
        let mut next = 0usize;
        for (i, n) in names.iter().enumerate() {
            let rxrx1 = n == &format!("w{}", i + 1) && i < VIEWER_RGB.len();
            let (colour, max) = if rxrx1 {
                (VIEWER_RGB[i], DISPLAY_MAX[i])
            } else if let Some(c) = stain_colour(n) {
                (c, NAMED_MAX)
            } else {
                // The first of the cycle no channel has yet.
                let c = (0..CYCLE.len())
                    .map(|k| CYCLE[(next + k) % CYCLE.len()])
                    .find(|c| !colours.contains(c))
                    .unwrap_or(CYCLE[next % CYCLE.len()]);
                next += 1;
                (c, NAMED_MAX)
            };
            colours.push(colour);
            maxima.push(max);
        }
        Palette {
            names,
            colours,
            maxima,
        }
    }

    /// Channels.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no channels.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// A label for channel `c` (1-based): `w2 ConA` for RxRx1's, `2 ER` for a named one.
    pub fn label(&self, c: usize) -> String {
        match c.checked_sub(1).and_then(|i| self.names.get(i)) {
            Some(n) if *n == format!("w{c}") => match STAINS.get(c - 1) {
                Some(s) => format!("w{c} {s}"),
                None => n.clone(),
            },
            Some(n) => format!("{c} {n}"),
            None => format!("w{c}"),
        }
    }

    /// Channel `token` as a 1-based number: a number (`2`, `w2`) or a name (`DNA`, in any
    /// case).
    pub fn resolve(&self, token: &str) -> Result<usize, String> {
        let t = token.trim();
        let number = t
            .strip_prefix(['w', 'W'])
            .unwrap_or(t)
            .parse::<usize>()
            .ok();
        let found = number.or_else(|| {
            self.names
                .iter()
                .position(|n| n.eq_ignore_ascii_case(t))
                .map(|i| i + 1)
        });
        match found {
            Some(c) if (1..=self.len()).contains(&c) => Ok(c),
            Some(c) => Err(format!(
                "channel {c} is outside 1..={} ({})",
                self.len(),
                self.names.join(", ")
            )),
            None => Err(format!(
                "{t:?} is neither a channel number nor one of the channels {}",
                self.names.join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rxrx1_channels_keep_their_colours_and_names_resolve() {
        let p = Palette::new(6, &[]);
        assert_eq!(p.colours[0], VIEWER_RGB[0]);
        assert_eq!(p.maxima[3], DISPLAY_MAX[3]);
        assert_eq!(p.label(2), "w2 ConA");
        assert_eq!(p.resolve("w3"), Ok(3));
        assert_eq!(p.resolve("6"), Ok(6));
        assert!(p.resolve("7").is_err());
        let names: Vec<String> = ["DNA", "ER", "RNA", "AGP", "Mito", "Brightfield", "X"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let j = Palette::new(7, &names);
        assert_eq!(j.resolve("mito"), Ok(5));
        assert_eq!(j.resolve("DNA"), Ok(1));
        assert_eq!(j.label(2), "2 ER");
        assert_eq!(
            (j.colours[0], j.colours[4], j.colours[5]),
            (BLUE, MAGENTA, GRAY)
        );
        // An unknown stain takes a colour no other channel has.
        assert!(!j.colours[..6].contains(&j.colours[6]), "{:?}", j.colours);
        let e = j.resolve("Golgi").unwrap_err();
        assert!(e.contains("DNA, ER, RNA, AGP, Mito"), "{e}");
    }
}
