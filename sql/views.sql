-- Views created in every `cellshard sql` session (and in `cellshard export`, the SQL tests
-- and the library's sessions). None of them reads the tensor column unless a query over
-- the view names it.

-- Control wells (negative: untreated B02; positive: the 30 control siRNAs).
CREATE VIEW controls AS
SELECT * FROM sites
WHERE well_type IN ('negative_control', 'positive_control');

-- Treatment wells (siRNA 0..1107; NULL for test wells whose labels are withheld).
CREATE VIEW treatments AS
SELECT * FROM sites
WHERE well_type = 'treatment';

-- Per-site, per-channel QC. mean/std are the stored (normalized) values; z_mean is the
-- site's mean against the other sites of its plate and channel. Flags:
--   blank          the channel is constant (std = 0): empty or failed image
--   low_contrast   std below a quarter of the plate's median std for the channel
--   outlier        |z_mean| > 3 (focus, debris, a wrong plate normalization)
--   saturated      mean within 5% of the top of the output range (uint8 / uint16 outputs)
-- Image quality measured at ingest on the raw crop (NULL for sites stored before it was):
--   focus               PowerLogLogSlope of the channel (more negative: less in focus)
--   saturation          fraction of the channel's pixels at the top of the bit depth
--   foreground          fraction of the channel's pixels above its Otsu threshold
--   nuclei_count        nuclei estimated in the DNA channel (per site)
--   qc_pass, qc_flags   the site's verdict under the pipeline's [qc] thresholds (per site)
CREATE VIEW site_qc AS
WITH per_channel AS (
  SELECT s.site_id, s.cell_type, s.experiment, s.plate, s.well, s.site, s.well_type,
         s.sirna_id, s.dtype, c.channel,
         s.channel_mean[c.channel] AS mean,
         s.channel_std[c.channel] AS std,
         s.qc_focus[c.channel] AS focus,
         s.qc_saturation[c.channel] AS saturation,
         s.qc_foreground[c.channel] AS foreground,
         s.nuclei_count, s.qc_pass, s.qc_flags
  FROM sites s
  JOIN (SELECT unnest(range(1, 65)) AS channel) AS c
    ON c.channel <= s.channels
), plate_channel AS (
  SELECT experiment, plate, channel,
         avg(mean) AS plate_mean,
         stddev_pop(mean) AS plate_std_of_means,
         median(std) AS plate_median_std
  FROM per_channel GROUP BY experiment, plate, channel
)
SELECT p.site_id, p.cell_type, p.experiment, p.plate, p.well, p.site, p.well_type,
       p.sirna_id, p.channel, p.mean, p.std,
       CASE WHEN q.plate_std_of_means > 0
            THEN (p.mean - q.plate_mean) / q.plate_std_of_means END AS z_mean,
       p.std = 0 AS blank,
       p.std < 0.25 * q.plate_median_std AS low_contrast,
       coalesce(abs(p.mean - q.plate_mean) > 3 * q.plate_std_of_means
                AND q.plate_std_of_means > 0, false) AS outlier,
       CASE p.dtype WHEN 'uint8' THEN p.mean > 0.95 * 255
                    WHEN 'uint16' THEN p.mean > 0.95 * 65535
                    ELSE false END AS saturated,
       p.focus, p.saturation, p.foreground, p.nuclei_count, p.qc_pass, p.qc_flags
FROM per_channel p
JOIN plate_channel q
  ON p.experiment = q.experiment AND p.plate = q.plate AND p.channel = q.channel;

-- One row per plate: what was stored, what was rejected, and the normalization bounds of
-- each channel ("low..high" of the raw values that map to the output range). Statistics
-- and rejects are those of the build whose tensors `sites` holds (joined on build_id), never
-- another build's of the same plate.
CREATE VIEW plate_summary AS
WITH s AS (
  SELECT cell_type, experiment, plate, build_id,
         count(*) AS sites,
         count(DISTINCT well) AS wells,
         sum(CASE WHEN well_type = 'negative_control' THEN 1 ELSE 0 END) AS negative_control_sites,
         sum(CASE WHEN well_type = 'positive_control' THEN 1 ELSE 0 END) AS positive_control_sites,
         sum(CASE WHEN well_type = 'treatment' THEN 1 ELSE 0 END) AS treatment_sites,
         count(DISTINCT sirna_id) AS sirnas,
         max(run_id) AS run_id
  FROM sites GROUP BY cell_type, experiment, plate, build_id
), r AS (
  SELECT build_id, count(DISTINCT site_id) AS rejected_sites, count(*) AS rejected_objects
  FROM rejects WHERE build_id IS NOT NULL GROUP BY build_id
), b AS (
  SELECT build_id,
         string_agg(concat('w', CAST(channel AS VARCHAR), '=', CAST(low_value AS VARCHAR), '..',
                           CAST(high_value AS VARCHAR)), ' ' ORDER BY channel) AS bounds
  FROM plate_stats GROUP BY build_id
)
SELECT s.cell_type, s.experiment, s.plate, s.sites, s.wells, s.negative_control_sites,
       s.positive_control_sites, s.treatment_sites, s.sirnas,
       coalesce(r.rejected_sites, 0) AS rejected_sites,
       coalesce(r.rejected_objects, 0) AS rejected_objects,
       b.bounds, s.run_id, s.build_id
FROM s
LEFT JOIN r ON s.build_id = r.build_id
LEFT JOIN b ON s.build_id = b.build_id;

-- Each site beside the statistics of the plate build that produced its tensor: the
-- normalization applied to it, one row per site and channel.
CREATE VIEW site_normalization AS
SELECT s.site_id, s.cell_type, s.experiment, s.plate, s.well, s.site, s.build_id,
       p.channel, p.method, p.reference, p.p_low, p.p_high, p.low_value, p.high_value,
       p.mean, p.std
FROM sites s
JOIN plate_stats p ON s.build_id = p.build_id;
