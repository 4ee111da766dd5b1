//! What a session learns of the store's tensors when it opens: the shape (from the first
//! row, where the Delta schema lost the field metadata) and the channel names.

use arrow::array::AsArray;
use arrow::datatypes::DataType;

use crate::{Result, Session, query, udf};

impl Session {
    /// Channel names by number from `plate_stats` (none for stores written before channels
    /// had names, whose table lacks the column until their next run).
    pub(crate) async fn names_from_stats(&self) -> Vec<String> {
        let Ok(batches) = query(
            &self.ctx,
            "SELECT channel, min(channel_name) FROM plate_stats WHERE channel_name IS NOT NULL GROUP BY channel ORDER BY channel",
        )
        .await
        else {
            return Vec::new();
        };
        let mut names = Vec::new();
        for b in &batches {
            let (Some(c), Ok(n)) = (
                b.column(0)
                    .as_primitive_opt::<arrow::datatypes::Int32Type>(),
                arrow::compute::cast(b.column(1), &DataType::Utf8),
            ) else {
                return Vec::new();
            };
            let n = n.as_string::<i32>();
            for i in 0..b.num_rows() {
                // Channels are 1..=n with no gaps, or the names are not used.
                if usize::try_from(c.value(i)).ok() != Some(names.len() + 1) {
                    return Vec::new();
                }
                names.push(n.value(i).to_string());
            }
        }
        names
    }

    /// The tensor spec from the first row's shape columns (stores whose Delta schema lost
    /// the field metadata).
    pub(crate) async fn spec_from_rows(&self) -> Result<Option<udf::TensorSpec>> {
        let b = query(
            &self.ctx,
            "SELECT channels, height, width, dtype FROM sites LIMIT 1",
        )
        .await?;
        let Some(b) = b.iter().find(|b| b.num_rows() > 0) else {
            return Ok(None);
        };
        let int = |i: usize| {
            b.column(i)
                .as_primitive_opt::<arrow::datatypes::Int32Type>()
                .and_then(|a| usize::try_from(a.value(0)).ok())
        };
        let dtype = arrow::compute::cast(b.column(3), &DataType::Utf8)?;
        let dtype = udf::Dtype::parse(dtype.as_string::<i32>().value(0));
        Ok(match (int(0), int(1), int(2), dtype) {
            (Some(channels), Some(height), Some(width), Some(dtype)) => Some(udf::TensorSpec {
                channels,
                height,
                width,
                dtype,
            }),
            _ => None,
        })
    }
}
