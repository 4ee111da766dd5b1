"""Parse the manifests `cellshard deploy k8s` wrote and print what the Rust test checks.

Usage: check_k8s.py DIR. Fails (exit 1, naming the field) when a required field is
missing; prints one JSON object: the Job's container args, completions, parallelism,
memory limit and scratch size in MiB, and the ConfigMap's file names.
"""

import json
import sys

import yaml


def need(doc, *path):
    cur = doc
    for key in path:
        if isinstance(cur, list):
            cur = cur[key]
        elif key not in cur:
            sys.exit(f"missing {'.'.join(str(p) for p in path)}")
        else:
            cur = cur[key]
    return cur


def mib(text):
    assert text.endswith("Mi"), text
    return int(text[:-2])


def main():
    out = sys.argv[1]
    with open(f"{out}/job.yaml") as f:
        job = yaml.safe_load(f)
    with open(f"{out}/configmap.yaml") as f:
        cm = yaml.safe_load(f)
    assert need(job, "kind") == "Job" and need(job, "apiVersion") == "batch/v1"
    spec = need(job, "spec")
    assert need(spec, "completionMode") == "Indexed"
    pod = need(spec, "template", "spec")
    c = need(pod, "containers", 0)
    rules = need(spec, "podFailurePolicy", "rules")
    actions = {r["action"]: r["onExitCodes"]["values"] for r in rules}
    mounts = {m["name"]: m["mountPath"] for m in need(c, "volumeMounts")}
    volumes = {v["name"]: v for v in need(pod, "volumes")}
    print(
        json.dumps(
            {
                "args": need(c, "args"),
                "completions": need(spec, "completions"),
                "parallelism": need(spec, "parallelism"),
                "backoff_per_index": need(spec, "backoffLimitPerIndex"),
                "fail_job_on": actions.get("FailJob"),
                "fail_index_on": actions.get("FailIndex"),
                "memory_limit_mib": mib(need(c, "resources", "limits", "memory")),
                "memory_request_mib": mib(need(c, "resources", "requests", "memory")),
                "scratch_mib": mib(volumes["scratch"]["emptyDir"]["sizeLimit"]),
                "scratch_mount": mounts["scratch"],
                "pipeline_mount": mounts["pipeline"],
                "configmap": need(volumes["pipeline"], "configMap", "name"),
                "secret": need(c, "envFrom", 0, "secretRef", "name"),
                "run_as_non_root": need(pod, "securityContext", "runAsNonRoot"),
                "configmap_name": need(cm, "metadata", "name"),
                "configmap_files": sorted(need(cm, "data").keys()),
                "configmap_text": next(iter(need(cm, "data").values())),
            }
        )
    )


main()
