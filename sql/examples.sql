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

-- Views (sql/views.sql) and tensor functions.
-- Per-plate summary: sites, controls, rejects and the normalization bounds per channel.
SELECT experiment, plate, sites, negative_control_sites, rejected_sites, bounds FROM plate_summary ORDER BY 1, 2;

-- QC flags per site and channel.
SELECT site_id, channel, round(mean, 1) AS mean, round(z_mean, 2) AS z, outlier, low_contrast
FROM site_qc WHERE outlier OR low_contrast OR blank ORDER BY abs(z_mean) DESC LIMIT 20;

-- Channel statistics computed from the stored tensors.
SELECT site_id, tensor_shape(tensor) AS shape, tensor_dtype(tensor) AS dtype,
       round(tensor_mean(tensor, 1), 2) AS mean_w1, tensor_percentile(tensor, 1, 99) AS p99_w1
FROM controls ORDER BY site_id LIMIT 5;

-- Thumbnails in the RxRx1 colours (write them out with --format parquet -o thumbs.parquet).
SELECT site_id, tensor_thumbnail(tensor, 64) AS png FROM sites WHERE well_type = 'negative_control';
