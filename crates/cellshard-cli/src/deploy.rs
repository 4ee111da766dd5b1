//! `cellshard deploy k8s`: the manifests of a rebuild on Kubernetes, one Job index per plate.
//!
//! The Job is an Indexed Job with `completions` = the plate count (from the same plan as
//! `cellshard plan`) and `parallelism` = workers; index I runs
//! `cellshard run PIPELINE --plate-index I --incremental`. `backoffLimitPerIndex` retries a
//! failed plate alone; the pod failure policy fails the whole Job at once on exit 2 (a bad
//! pipeline fails every plate alike) and fails only the index on exit 3 (too many rejects
//! in that plate). The pipeline comes from a ConfigMap, credentials from a Secret, and the
//! memory limit and scratch size from `cellshard_runtime::resources`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use cellshard_runtime::RunOptions;
use cellshard_runtime::discover::PlateSelection;
use cellshard_runtime::resources::{scratch_bytes, worker_memory_bytes};

use crate::load_pipeline;

/// `cellshard deploy k8s`.
#[derive(clap::Args)]
pub(crate) struct K8sArgs {
    /// Pipeline TOML file (put into the ConfigMap as is).
    pipeline: PathBuf,
    /// Container image built from `deploy/Dockerfile`.
    #[arg(long, default_value = "cellshard:latest")]
    image: String,
    /// Plates in the Job; default: listed now, as `cellshard plan` does (the store is not
    /// read).
    #[arg(long)]
    plate_count: Option<usize>,
    /// Only these plates, as EXPERIMENT/PLATE (passed on to every index).
    #[arg(long, value_delimiter = ',')]
    plates: Vec<String>,
    /// Only the plates of these experiments (passed on to every index).
    #[arg(long, value_delimiter = ',')]
    experiments: Vec<String>,
    /// Most sites in one plate (sizes the scratch); default: listed now, else 616 (RxRx1).
    #[arg(long)]
    max_sites: Option<u64>,
    /// Workers (pods) at once.
    #[arg(long, default_value_t = 8)]
    parallelism: usize,
    /// CPU threads per worker.
    #[arg(long, default_value_t = 4)]
    threads: usize,
    /// The store the Job writes (default: the pipeline's `sink.url`).
    #[arg(long)]
    sink: Option<String>,
    /// The raw images the Job reads (default: the pipeline's `source.url`).
    #[arg(long)]
    source: Option<String>,
    /// Secret with the object store credentials (AWS_ACCESS_KEY_ID, ...).
    #[arg(long, default_value = "cellshard-credentials")]
    secret: String,
    /// Largest share of rejected objects a plate may have (exit 3 above it).
    #[arg(long, default_value_t = 0.01)]
    max_reject_fraction: f64,
    /// Name of the Job and prefix of the other objects.
    #[arg(long, default_value = "cellshard-rebuild")]
    name: String,
    /// Directory to write `configmap.yaml` and `job.yaml` into.
    #[arg(short, long)]
    out: PathBuf,
}

/// The location and selection flags, as more container args.
fn extra_args(a: &K8sArgs) -> String {
    let mut out = String::new();
    let mut push = |flag: &str, value: &str| {
        out.push_str(&format!(
            "\n            - {flag}\n            - \"{value}\""
        ));
    };
    if let Some(s) = &a.source {
        push("--source", s);
    }
    if let Some(s) = &a.sink {
        push("--sink", s);
    }
    if !a.plates.is_empty() {
        push("--plates", &a.plates.join(","));
    }
    if !a.experiments.is_empty() {
        push("--experiments", &a.experiments.join(","));
    }
    out
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

pub(crate) async fn k8s(a: K8sArgs) -> Result<()> {
    let pipeline = load_pipeline(&a.pipeline)?;
    let text = std::fs::read_to_string(&a.pipeline)
        .with_context(|| format!("cannot read {}", a.pipeline.display()))?;
    let selection =
        PlateSelection::parse(&a.plates, &a.experiments).map_err(crate::exit::invalid)?;
    let (plates, listed_sites) = match a.plate_count {
        Some(n) => (n, None),
        None => {
            let opts = RunOptions {
                selection,
                source: a.source.clone(),
                sink: a.sink.clone(),
                ..RunOptions::new(pipeline.clone())
            };
            let plan = cellshard_runtime::plan_listing(&opts).await?;
            let most = plan.plates.iter().map(|p| p.sites).max();
            (plan.plates.len(), most)
        }
    };
    if plates == 0 {
        return Err(crate::exit::invalid(
            "no plates to build: nothing to deploy",
        ));
    }
    let max_sites = a.max_sites.or(listed_sites).unwrap_or(616);
    let memory = mib(worker_memory_bytes(&pipeline, a.threads));
    let scratch = mib(scratch_bytes(&pipeline, max_sites));
    let file = a
        .pipeline
        .file_name()
        .and_then(|f| f.to_str())
        .unwrap_or("pipeline.toml");
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create {}", a.out.display()))?;
    let name = &a.name;
    let indented: String = text.lines().map(|l| format!("    {l}\n")).collect();
    let configmap = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}-pipeline\ndata:\n  {file}: |\n{indented}"
    );
    let job = format!(
        r#"# One index per plate: index I builds the I-th plate of `cellshard plan`.
apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
  completionMode: Indexed
  completions: {plates}
  parallelism: {parallelism}
  backoffLimitPerIndex: 3
  maxFailedIndexes: {max_failed}
  podFailurePolicy:
    rules:
      - action: FailJob
        onExitCodes:
          containerName: cellshard
          operator: In
          values: [2]
      - action: FailIndex
        onExitCodes:
          containerName: cellshard
          operator: In
          values: [3]
  template:
    spec:
      restartPolicy: Never
      securityContext:
        runAsNonRoot: true
        runAsUser: 10001
      containers:
        - name: cellshard
          image: {image}
          args:
            - run
            - /etc/cellshard/{file}
            - --plate-index
            - $(JOB_COMPLETION_INDEX)
            - --incremental
            - --threads
            - "{threads}"
            - --max-reject-fraction
            - "{frac}"
            - --scratch
            - /scratch
            - --no-progress{selected}
          envFrom:
            - secretRef:
                name: {secret}
          resources:
            requests:
              cpu: "{threads}"
              memory: {memory}Mi
            limits:
              memory: {memory}Mi
          volumeMounts:
            - name: pipeline
              mountPath: /etc/cellshard
            - name: scratch
              mountPath: /scratch
      volumes:
        - name: pipeline
          configMap:
            name: {name}-pipeline
        - name: scratch
          emptyDir:
            sizeLimit: {scratch}Mi
"#,
        parallelism = a.parallelism.min(plates).max(1),
        max_failed = plates.div_ceil(10),
        image = a.image,
        threads = a.threads,
        frac = a.max_reject_fraction,
        secret = a.secret,
        selected = extra_args(&a),
    );
    for (f, body) in [("configmap.yaml", configmap), ("job.yaml", job)] {
        let path = a.out.join(f);
        std::fs::write(&path, body).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    println!(
        "{plates} plates, {} workers of {} threads, {memory} MiB and {scratch} MiB of scratch each",
        a.parallelism.min(plates).max(1),
        a.threads
    );
    Ok(())
}
