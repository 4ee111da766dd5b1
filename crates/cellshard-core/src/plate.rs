//! Plate formats and well names: 96 (8 x 12), 384 (16 x 24) and 1536 (32 x 48) wells.
//!
//! A well is named by its row, in letters (`A`..`Z`, then `AA`..`AF` on a 1536-well plate,
//! as RxRx3 writes `AD27`), and its column number (`B02`, `B2`). A plate's format is the
//! smallest of the three that holds every well it has, so the grids of the heatmaps and
//! the viewer's plate page follow the data.

/// The rows and columns of a plate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlateFormat {
    /// Rows (`A`, `B`, ...).
    pub rows: usize,
    /// Columns (1, 2, ...).
    pub cols: usize,
}

impl PlateFormat {
    /// 96 wells, 8 x 12.
    pub const W96: PlateFormat = PlateFormat { rows: 8, cols: 12 };
    /// 384 wells, 16 x 24 (RxRx1).
    pub const W384: PlateFormat = PlateFormat { rows: 16, cols: 24 };
    /// 1536 wells, 32 x 48 (RxRx3).
    pub const W1536: PlateFormat = PlateFormat { rows: 32, cols: 48 };

    /// Wells on the plate.
    pub fn wells(&self) -> usize {
        self.rows * self.cols
    }

    /// The smallest format that holds every named well that can be placed (384 when no
    /// well can; wells past 1536 are left to [`PlateFormat::holds`]).
    pub fn containing<'a>(wells: impl IntoIterator<Item = &'a str>) -> PlateFormat {
        let (mut rows, mut cols, mut any) = (0, 0, false);
        for (r, c) in wells.into_iter().filter_map(well_position) {
            (rows, cols, any) = (rows.max(r + 1), cols.max(c + 1), true);
        }
        if !any {
            return PlateFormat::W384;
        }
        [PlateFormat::W96, PlateFormat::W384, PlateFormat::W1536]
            .into_iter()
            .find(|f| rows <= f.rows && cols <= f.cols)
            .unwrap_or(PlateFormat::W1536)
    }

    /// Whether `well` has a place on this plate.
    pub fn holds(&self, well: &str) -> bool {
        well_position(well).is_some_and(|(r, c)| r < self.rows && c < self.cols)
    }
}

/// (row, column), 0-based, of a well name: `B02` is (1, 1), `AD27` is (29, 26). `None` for
/// a name that is not one or two letters and a column number from 1.
pub fn well_position(well: &str) -> Option<(usize, usize)> {
    let split = well.find(|c: char| c.is_ascii_digit())?;
    let (letters, digits) = well.split_at(split);
    let col: usize = digits.parse().ok().filter(|&c| (1..=999).contains(&c))?;
    let l: Vec<usize> = letters
        .chars()
        .map(|c| {
            u8::try_from(c.to_ascii_uppercase())
                .ok()
                .filter(u8::is_ascii_uppercase)
                .map(|b| usize::from(b - b'A'))
        })
        .collect::<Option<_>>()?;
    let row = match l.as_slice() {
        [a] => *a,
        [a, b] => 26 * (a + 1) + b,
        _ => return None,
    };
    Some((row, col - 1))
}

/// The letters of row `row` (0-based): `A` for 0, `Z` for 25, `AA` for 26, `AF` for 31.
pub fn row_name(row: usize) -> String {
    let letter = |i: usize| char::from(b'A' + u8::try_from(i % 26).unwrap_or(0));
    if row < 26 {
        letter(row).to_string()
    } else {
        format!("{}{}", letter(row / 26 - 1), letter(row))
    }
}

/// The well at (row, column), 0-based, as RxRx1 and RxRx3 name it: `B02`, `AD27`.
pub fn well_name(row: usize, col: usize) -> String {
    format!("{}{:02}", row_name(row), col + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wells_of_every_format_name_and_place_both_ways() {
        assert_eq!(well_position("B02"), Some((1, 1)));
        assert_eq!(well_position("b2"), Some((1, 1)));
        assert_eq!(well_position("P24"), Some((15, 23)));
        assert_eq!(well_position("AD27"), Some((29, 26)));
        assert_eq!(well_position("AF48"), Some((31, 47)));
        for bad in ["", "B", "02", "B00", "ABC01", "B-2", "É01"] {
            assert_eq!(well_position(bad), None, "{bad}");
        }
        for f in [PlateFormat::W96, PlateFormat::W384, PlateFormat::W1536] {
            for r in 0..f.rows {
                for c in 0..f.cols {
                    assert_eq!(well_position(&well_name(r, c)), Some((r, c)));
                }
            }
        }
        assert_eq!(well_name(29, 26), "AD27");
    }

    #[test]
    fn a_plate_is_the_smallest_format_holding_its_wells() {
        assert_eq!(PlateFormat::containing(["A01", "H12"]), PlateFormat::W96);
        assert_eq!(PlateFormat::containing(["B02", "O23"]), PlateFormat::W384);
        assert_eq!(PlateFormat::containing(["B02", "AD27"]), PlateFormat::W1536);
        assert_eq!(PlateFormat::containing(["A49"]), PlateFormat::W1536);
        assert_eq!(PlateFormat::containing(["x"]), PlateFormat::W384);
        assert_eq!(PlateFormat::W1536.wells(), 1536);
        assert!(!PlateFormat::W384.holds("Q01") && PlateFormat::W1536.holds("AF48"));
    }
}
