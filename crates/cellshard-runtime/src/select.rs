//! Which plates a run takes: `--plates`, `--experiments` and `--plate-index`, and this
//! worker's share of them.

use cellshard_core::PlateKey;

/// Which plates a run takes: all when both lists are empty, else the named plates and
/// every plate of the named experiments.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlateSelection {
    /// Plates by name.
    pub plates: Vec<PlateKey>,
    /// Experiments by name.
    pub experiments: Vec<String>,
    /// Of the plates named (or all), only the one at this 0-based position in listing
    /// order: one plate per index of a Kubernetes Indexed Job.
    pub index: Option<usize>,
}

impl PlateSelection {
    /// From `EXPERIMENT/PLATE` names and experiment names.
    pub fn parse(plates: &[String], experiments: &[String]) -> std::result::Result<Self, String> {
        let plates = plates
            .iter()
            .map(|p| {
                let (e, n) = p.rsplit_once('/').ok_or_else(|| {
                    format!("plate {p:?}: expected EXPERIMENT/PLATE, e.g. HUVEC-01/1")
                })?;
                let plate = n
                    .parse()
                    .map_err(|_| format!("plate {p:?}: {n:?} is not a plate number"))?;
                Ok(PlateKey {
                    experiment: e.to_string(),
                    plate,
                })
            })
            .collect::<std::result::Result<_, String>>()?;
        Ok(PlateSelection {
            plates,
            experiments: experiments.to_vec(),
            index: None,
        })
    }

    pub(crate) fn is_all(&self) -> bool {
        self.plates.is_empty() && self.experiments.is_empty()
    }

    pub(crate) fn takes(&self, p: &PlateKey) -> bool {
        self.is_all() || self.plates.contains(p) || self.experiments.contains(&p.experiment)
    }

    /// Names that match none of `found`.
    pub(crate) fn unknown<'a>(
        &self,
        found: impl Iterator<Item = &'a PlateKey> + Clone,
    ) -> Vec<String> {
        let mut out: Vec<String> = self
            .plates
            .iter()
            .filter(|p| !found.clone().any(|f| f == *p))
            .map(|p| format!("plate {}/{}", p.experiment, p.plate))
            .collect();
        out.extend(
            self.experiments
                .iter()
                .filter(|e| !found.clone().any(|f| f.experiment == **e))
                .map(|e| format!("experiment {e}")),
        );
        out
    }
}

/// Which plates a worker owns: plates in sorted order, dealt round-robin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerShare {
    /// This worker's index (0-based).
    pub index: u32,
    /// Number of workers.
    pub count: u32,
}

impl WorkerShare {
    /// The single worker.
    pub const ALL: WorkerShare = WorkerShare { index: 0, count: 1 };
}
