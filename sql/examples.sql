-- Example queries over a cellshard store. Run one with:
--   cargo run -p cellshard-cli -- sql --store demo-out/store -c "<query>"
-- or pipe this file:  cargo run -p cellshard-cli -- sql --store demo-out/store < sql/examples.sql

-- Sites per cell type, experiment and well type (metadata only: the tensor is never read).
SELECT cell_type, experiment, well_type, count(*) AS sites
FROM sites GROUP BY 1, 2, 3 ORDER BY 1, 2, 3;

-- The negative controls of one experiment.
SELECT site_id, plate, well, site FROM sites
WHERE experiment = 'HUVEC-01' AND well_type = 'negative_control' ORDER BY plate, well, site;

-- Per-plate normalization bounds of the nucleus channel (w1).
SELECT experiment, plate, low_value, high_value, mean, std, pixel_count
FROM plate_stats WHERE channel = 1 ORDER BY experiment, plate;

-- Output intensity QC: sites whose mean nucleus signal is far from their plate's.
SELECT s.site_id, s.channel_mean[1] AS mean_w1, p.plate_mean_w1
FROM sites s JOIN (
  SELECT experiment, plate, avg(channel_mean[1]) AS plate_mean_w1 FROM sites GROUP BY 1, 2
) p ON s.experiment = p.experiment AND s.plate = p.plate
WHERE abs(s.channel_mean[1] - p.plate_mean_w1) > 20
ORDER BY s.site_id;

-- Everything that did not make it, by reason.
SELECT reason, stage, count(*) AS objects FROM rejects GROUP BY 1, 2 ORDER BY 3 DESC;

-- Run history.
SELECT run_id, worker, sites_stored, sites_rejected, bytes_in, bytes_out, decode_seconds FROM runs ORDER BY started_at;
