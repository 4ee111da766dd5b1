//! Experiment metadata: the RxRx1 `metadata.csv` dialect (one row per site), the Kaggle
//! competition dialect (`train.csv`, `test.csv`, `*_controls.csv`: one row per well, keyed
//! by `id_code`), RxRx3's `metadata.csv` (per well, `experiment_name`/`address`) and JUMP's
//! `load_data.csv` (per site: `Metadata_Plate` is the plate's barcode, which cellshard keys
//! as the experiment, plate 1; `FileName_Orig{Channel}` names each channel's file). Several
//! files merge into one [`MetadataTable`]:
//! - a site's row takes the values its well's row has and it lacks (JUMP's per-well
//!   `well.csv` beside the per-site `load_data.csv`);
//! - a file with no well column is a lookup table joined on every column it shares with the
//!   files before it (JUMP's `plate.csv` on `Metadata_Plate`, `compound.csv` on
//!   `Metadata_JCP2022`), so it comes after the files it extends.
//!
//! [`MetadataTable::finish`] applies both once every file is read.
//!
//! Every column is carried: the well-known ones are typed (`cell_type`, `dataset`,
//! `well_type`, `sirna_id`), every other column is kept as a string in `extra`, in the
//! order first seen. Bad rows do not abort parsing: they are collected in
//! [`MetadataTable::row_errors`] with file and line, so the run can report them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::{Error, Result, SiteKey};

/// Metadata of one site (or of a whole well, in the Kaggle dialect).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteMetadata {
    /// Cell type, e.g. `HUVEC` (derived from the experiment name when the file lacks it).
    pub cell_type: String,
    /// `train` / `test`, when known.
    pub dataset: Option<String>,
    /// Experiment name.
    pub experiment: String,
    /// Plate number.
    pub plate: u32,
    /// Well address.
    pub well: String,
    /// Site number; `None` for well-level rows, which apply to every site of the well.
    pub site: Option<u32>,
    /// `treatment`, `positive_control`, `negative_control` (or `unknown`).
    pub well_type: String,
    /// siRNA id; `None` where withheld (RxRx1 test treatments) or absent.
    pub sirna_id: Option<i32>,
    /// Values of [`MetadataTable::extra_columns`], by index; shorter vectors mean trailing `None`s.
    pub extra: Vec<Option<String>>,
}

type RowKey = (String, u32, String, Option<u32>);

/// What a lookup found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The site's metadata (a site row, or else its well's row).
    Found(&'a SiteMetadata),
    /// No row for the site or its well.
    Missing,
    /// Two rows for the site disagree; the string names the files and lines.
    Conflict(&'a str),
}

/// All metadata rows of a run, merged from one or more files.
#[derive(Debug, Default, Clone)]
pub struct MetadataTable {
    extra_columns: Vec<String>,
    rows: HashMap<RowKey, (Arc<SiteMetadata>, String)>,
    conflicts: HashMap<RowKey, String>,
    /// Lookup tables waiting for [`MetadataTable::finish`], in file order.
    lookups: Vec<join::LookupTable>,
    /// `(experiment, file name)` -> channel name, from `FileName_Orig{Channel}` columns.
    channel_files: HashMap<(String, String), String>,
    /// Rows (or whole files) that could not be used.
    pub row_errors: Vec<RowError>,
}

/// A metadata row or file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// `file:line`, or the file when the whole file is unusable.
    pub at: String,
    /// The cause.
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Prefix of JUMP's per-channel file name columns (`FileName_OrigDNA`).
const FILE_NAME: &str = "FileName_Orig";

const KNOWN: &[&str] = &[
    "site_id",
    "well_id",
    "id_code",
    "cell_type",
    "dataset",
    "experiment",
    "experiment_name",
    "plate",
    "well",
    "address",
    "site",
    "well_type",
    "sirna_id",
];

impl MetadataTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn row_error(&mut self, at: &str, message: String) {
        self.row_errors.push(RowError {
            at: at.to_string(),
            message,
        });
    }

    /// Names of the carried columns beyond the typed ones.
    pub fn extra_columns(&self) -> &[String] {
        &self.extra_columns
    }

    /// Number of rows (sites or wells).
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no rows were loaded.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Parse one CSV file and merge its rows. `path` names the file in messages and, for the
    /// Kaggle dialect, gives the dataset (`train...csv` / `test...csv`). A file that cannot
    /// be used at all (empty, no usable header) is recorded in [`MetadataTable::row_errors`]
    /// like a bad row and contributes nothing: the sites it would describe are then
    /// rejected for lack of metadata, and the run goes on.
    pub fn add_csv(&mut self, path: &str, bytes: &[u8]) -> Result<usize> {
        match self.parse_csv(path, bytes) {
            Err(Error::Metadata { path, message }) => {
                self.row_errors.push(RowError { at: path, message });
                Ok(0)
            }
            other => other,
        }
    }

    fn parse_csv(&mut self, path: &str, bytes: &[u8]) -> Result<usize> {
        let err = |message: String| Error::Metadata {
            path: path.to_string(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new().flexible(true).from_reader(bytes);
        let headers: Vec<String> = reader
            .headers()
            .map_err(|e| err(format!("cannot read the header: {e}")))?
            .iter()
            .map(|h| h.trim().trim_start_matches('\u{feff}').to_string())
            .collect();
        if headers.iter().all(|h| h.is_empty()) {
            return Err(err("the file is empty (no header row)".into()));
        }
        let col = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| headers.iter().position(|h| h == n))
        };
        let kaggle = col(&["id_code"]).is_some();
        let barcode = col(&["Metadata_Plate"]);
        let experiment = col(&["experiment", "experiment_name"]).or(barcode);
        let plate = col(&["plate"]);
        let well = col(&["well", "address", "Metadata_Well"]);
        if well.is_none() {
            return self.add_lookup(path, &headers, reader).map_err(err);
        }
        let (Some(experiment), Some(well)) = (experiment, well) else {
            return Err(err(format!(
                "the header lacks required columns: need experiment, plate and well; found {}",
                headers.join(",")
            )));
        };
        // A plate named by barcode (JUMP) is plate 1 of the experiment the barcode names.
        let plate = match plate {
            Some(p) => Some(p),
            None if Some(experiment) == barcode => None,
            None => {
                return Err(err(format!(
                    "the header lacks required columns: need experiment, plate and well; found {}",
                    headers.join(",")
                )));
            }
        };
        let site = col(&["site", "Metadata_Site"]);
        let files: Vec<(usize, String)> = headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, h.strip_prefix(FILE_NAME)?.to_string())))
            .collect();
        let cell_type = col(&["cell_type"]);
        let dataset = col(&["dataset"]);
        let well_type = col(&["well_type"]);
        let sirna = if kaggle {
            col(&["sirna_id", "sirna"])
        } else {
            col(&["sirna_id"])
        };
        let file_dataset = file_dataset(path);

        let mut extra_map = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            if KNOWN.contains(&h.as_str()) || Some(i) == sirna {
                continue;
            }
            let idx = match self.extra_columns.iter().position(|c| c == h) {
                Some(idx) => idx,
                None => {
                    self.extra_columns.push(h.clone());
                    self.extra_columns.len() - 1
                }
            };
            extra_map.push((i, idx));
        }

        let mut added = 0;
        for (n, record) in reader.records().enumerate() {
            // Line numbers are 1-based and the header is line 1.
            let line = record
                .as_ref()
                .ok()
                .and_then(|r| r.position())
                .map_or(n as u64 + 2, |p| p.line());
            let at = format!("{path}:{line}");
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    self.row_error(&at, format!("unreadable row: {e}"));
                    continue;
                }
            };
            if record.len() != headers.len() {
                self.row_error(
                    &at,
                    format!(
                        "has {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    ),
                );
                continue;
            }
            let get = |i: usize| record.get(i).unwrap_or("").trim();
            let exp = get(experiment).to_string();
            let well_s = get(well).to_string();
            if exp.is_empty() || well_s.is_empty() {
                self.row_error(&at, "empty experiment or well".to_string());
                continue;
            }
            let plate_n = match plate.map(get) {
                None => 1,
                Some(v) => {
                    let Ok(n) = v.parse::<u32>() else {
                        self.row_error(&at, format!("plate {v:?} is not a number"));
                        continue;
                    };
                    n
                }
            };
            for (i, name) in &files {
                let file = get(*i);
                if !file.is_empty() {
                    self.channel_files
                        .insert((exp.clone(), file.to_string()), name.clone());
                }
            }
            let site_n = match site.map(get) {
                None => None,
                Some(s) => match s.parse::<u32>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.row_error(&at, format!("site {s:?} is not a number"));
                        continue;
                    }
                },
            };
            let sirna_id = match sirna.map(get) {
                None | Some("") => None,
                Some(s) => match s.parse::<i32>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        self.row_error(&at, format!("sirna id {s:?} is not a number"));
                        continue;
                    }
                },
            };
            let mut extra = vec![None; self.extra_columns.len()];
            for &(i, idx) in &extra_map {
                let v = get(i);
                extra[idx] = (!v.is_empty()).then(|| v.to_string());
            }
            let meta = SiteMetadata {
                cell_type: cell_type
                    .map(get)
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| cell_type_of(&exp), str::to_string),
                dataset: dataset
                    .map(get)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or_else(|| file_dataset.clone()),
                experiment: exp.clone(),
                plate: plate_n,
                well: well_s.clone(),
                site: site_n,
                well_type: well_type.map(get).filter(|s| !s.is_empty()).map_or_else(
                    || {
                        if kaggle {
                            "treatment".to_string()
                        } else {
                            "unknown".to_string()
                        }
                    },
                    str::to_string,
                ),
                sirna_id,
                extra,
            };
            let key = (exp, plate_n, well_s, site_n);
            match self.rows.get(&key) {
                Some((existing, _)) if same_row(existing, &meta) => {}
                Some((_, first_at)) => {
                    let msg = format!("rows at {first_at} and {at} disagree");
                    self.row_error(&at, format!("conflicts with {first_at}"));
                    self.conflicts.insert(key, msg);
                }
                None => {
                    self.rows.insert(key, (Arc::new(meta), at));
                    added += 1;
                }
            }
        }
        Ok(added)
    }

    /// The channel `file` (a file name, without directories) holds on plate `experiment`,
    /// by the `FileName_Orig{Channel}` columns of a `load_data.csv`.
    pub fn channel_of_file(&self, experiment: &str, file: &str) -> Option<&str> {
        self.channel_files
            .get(&(experiment.to_string(), file.to_string()))
            .map(String::as_str)
    }

    /// Whether a file named channels by file (`load_data.csv`).
    pub fn names_channel_files(&self) -> bool {
        !self.channel_files.is_empty()
    }

    /// Metadata for a site: its own row, else its well's row.
    pub fn lookup(&self, key: &SiteKey) -> Lookup<'_> {
        let mut k: RowKey = (
            key.experiment.clone(),
            key.plate,
            key.well.clone(),
            Some(key.site),
        );
        for _ in 0..2 {
            if let Some(msg) = self.conflicts.get(&k) {
                return Lookup::Conflict(msg);
            }
            if let Some((row, _)) = self.rows.get(&k) {
                return Lookup::Found(row);
            }
            k.3 = None;
        }
        Lookup::Missing
    }

    /// Every row, in no particular order.
    pub fn rows(&self) -> impl Iterator<Item = &SiteMetadata> {
        self.rows.values().map(|(r, _)| r.as_ref())
    }
}

fn same_row(a: &SiteMetadata, b: &SiteMetadata) -> bool {
    let n = a.extra.len().max(b.extra.len());
    let ext = |v: &Vec<Option<String>>, i: usize| v.get(i).cloned().flatten();
    a.cell_type == b.cell_type
        && a.dataset == b.dataset
        && a.well_type == b.well_type
        && a.sirna_id == b.sirna_id
        && (0..n).all(|i| ext(&a.extra, i) == ext(&b.extra, i))
}

/// `HUVEC-01` -> `HUVEC`.
pub fn cell_type_of(experiment: &str) -> String {
    experiment
        .split('-')
        .next()
        .unwrap_or(experiment)
        .to_string()
}

/// `.../train_controls.csv` -> `train`; `test.csv` -> `test`.
fn file_dataset(path: &str) -> Option<String> {
    let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    ["train", "test"]
        .into_iter()
        .find(|d| name.starts_with(d))
        .map(str::to_string)
}

#[path = "metadata_join.rs"]
mod join;

#[cfg(test)]
#[path = "metadata_tests.rs"]
mod tests;
