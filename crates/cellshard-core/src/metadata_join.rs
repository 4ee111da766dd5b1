//! Joining metadata files: a site's row takes its well row's values, and lookup tables
//! (files without a well column) fill their columns by the columns they share.

use std::collections::HashMap;
use std::sync::Arc;

use super::{KNOWN, MetadataTable, RowKey, SiteMetadata};

/// A file without a well column: rows keyed by the values of the columns it shares with
/// the rows (`keys`, indexes into `extra_columns`), giving values for `values`.
#[derive(Debug, Clone)]
pub(super) struct LookupTable {
    path: String,
    keys: Vec<usize>,
    values: Vec<usize>,
    rows: HashMap<Vec<String>, Vec<Option<String>>>,
}

impl MetadataTable {
    /// A file without a well column: a lookup table joined on the columns it shares with
    /// the files before it.
    pub(super) fn add_lookup(
        &mut self,
        path: &str,
        headers: &[String],
        mut reader: csv::Reader<&[u8]>,
    ) -> std::result::Result<usize, String> {
        let keys: Vec<(usize, usize)> = headers
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Some((i, self.extra_columns.iter().position(|c| c == h)?)))
            .collect();
        if keys.is_empty() {
            return Err(format!(
                "the header lacks required columns: need experiment, plate and well, or a column of an earlier file to join on; found {}",
                headers.join(",")
            ));
        }
        let mut values = Vec::new();
        for (i, h) in headers.iter().enumerate() {
            if keys.iter().any(|(k, _)| *k == i) || KNOWN.contains(&h.as_str()) {
                continue;
            }
            let idx = match self.extra_columns.iter().position(|c| c == h) {
                Some(idx) => idx,
                None => {
                    self.extra_columns.push(h.clone());
                    self.extra_columns.len() - 1
                }
            };
            values.push((i, idx));
        }
        let mut rows = HashMap::new();
        for (n, record) in reader.records().enumerate() {
            let at = format!("{path}:{}", n + 2);
            let record = match record {
                Ok(r) if r.len() == headers.len() => r,
                Ok(r) => {
                    let msg = format!("has {} fields, the header has {}", r.len(), headers.len());
                    self.row_error(&at, msg);
                    continue;
                }
                Err(e) => {
                    self.row_error(&at, format!("unreadable row: {e}"));
                    continue;
                }
            };
            let get = |i: usize| record.get(i).unwrap_or("").trim().to_string();
            let key: Vec<String> = keys.iter().map(|(i, _)| get(*i)).collect();
            let vals: Vec<Option<String>> = values
                .iter()
                .map(|(i, _)| Some(get(*i)).filter(|v| !v.is_empty()))
                .collect();
            if let Some(old) = rows.insert(key, vals.clone())
                && old != vals
            {
                self.row_error(&at, "repeats an earlier row's key with other values".into());
            }
        }
        let added = rows.len();
        self.lookups.push(LookupTable {
            path: path.to_string(),
            keys: keys.iter().map(|(_, c)| *c).collect(),
            values: values.iter().map(|(_, c)| *c).collect(),
            rows,
        });
        Ok(added)
    }

    /// Merge what the files say about each site: a site's row takes its well row's values
    /// where it has none, then the lookup tables fill their columns, in file order. Call
    /// once every file is added.
    pub fn finish(&mut self) {
        let wells: HashMap<RowKey, Arc<SiteMetadata>> = self
            .rows
            .iter()
            .filter(|(k, _)| k.3.is_none())
            .map(|(k, (r, _))| (k.clone(), r.clone()))
            .collect();
        let lookups = std::mem::take(&mut self.lookups);
        let width = self.extra_columns.len();
        for (key, (row, _)) in &mut self.rows {
            let well = key
                .3
                .and_then(|_| wells.get(&(key.0.clone(), key.1, key.2.clone(), None)));
            if well.is_none() && lookups.is_empty() {
                continue;
            }
            let row = Arc::make_mut(row);
            row.extra.resize(width, None);
            if let Some(w) = well {
                for (mine, theirs) in row.extra.iter_mut().zip(&w.extra) {
                    if mine.is_none() {
                        mine.clone_from(theirs);
                    }
                }
            }
            for l in &lookups {
                let Some(key) = l
                    .keys
                    .iter()
                    .map(|k| row.extra[*k].clone())
                    .collect::<Option<Vec<String>>>()
                else {
                    continue;
                };
                if let Some(vals) = l.rows.get(&key) {
                    for (c, v) in l.values.iter().zip(vals) {
                        if row.extra[*c].is_none() {
                            row.extra[*c].clone_from(v);
                        }
                    }
                }
            }
        }
        for l in &lookups {
            if l.rows.is_empty() {
                self.row_error(&l.path, "the lookup table has no rows".into());
            }
        }
    }
}
