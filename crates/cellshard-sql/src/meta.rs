//! The shell's backslash commands (`\d`, `\d NAME`, `\df`, `\version N`, `\timestamp T`,
//! `\latest`), run by [`Session::run`].

use std::sync::Arc;

use arrow::array::StringArray;
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use crate::{AsOf, Error, Result, Session, query, row_count, udf};

impl Session {
    pub(crate) async fn meta(&mut self, meta: &str) -> Result<Vec<RecordBatch>> {
        let meta = meta.trim().trim_end_matches(';').trim();
        let (cmd, arg) = meta.split_once(char::is_whitespace).unwrap_or((meta, ""));
        let arg = arg.trim();
        match (cmd, arg) {
            ("d", "") => {
                query(
                    &self.ctx,
                    "SELECT table_name AS name, lower(replace(table_type, 'BASE ', '')) AS kind FROM information_schema.tables WHERE table_schema = 'public' ORDER BY kind, name",
                )
                .await
            }
            ("d", t) => {
                let b = query(
                    &self.ctx,
                    &format!(
                        "SELECT column_name AS column, data_type AS type, is_nullable AS nullable FROM information_schema.columns WHERE table_schema = 'public' AND table_name = '{}' ORDER BY ordinal_position",
                        t.replace('\'', "''")
                    ),
                )
                .await?;
                if row_count(&b) == 0 {
                    return Err(Error::Usage(format!("no table or view named {t:?} (\\d lists them)")));
                }
                Ok(b)
            }
            ("df", _) => one_column("function", udf::usage()),
            ("version", v) => {
                let v: i64 = v
                    .parse()
                    .map_err(|_| Error::Usage(format!("\\version needs a number, got {v:?}")))?;
                self.set_as_of(AsOf::Version(v)).await?;
                self.describe_as_of()
            }
            ("timestamp", t) => {
                self.set_as_of(AsOf::parse_timestamp(t)?).await?;
                self.describe_as_of()
            }
            ("latest", "") => {
                self.set_as_of(AsOf::Latest).await?;
                self.describe_as_of()
            }
            _ => Err(Error::Usage(format!(
                "unknown command \\{meta}: try \\d, \\d NAME, \\df, \\version N, \\timestamp T, \\latest"
            ))),
        }
    }

    fn describe_as_of(&self) -> Result<Vec<RecordBatch>> {
        let rows: Vec<String> = self
            .versions
            .iter()
            .map(|(t, v)| format!("{t} v{v}"))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("as_of", DataType::Utf8, false),
            Field::new("tables", DataType::Utf8, false),
        ]));
        Ok(vec![RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![self.as_of.to_string()])),
                Arc::new(StringArray::from(vec![rows.join(", ")])),
            ],
        )?])
    }
}

fn one_column(name: &str, values: Vec<&str>) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, false)]));
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![Arc::new(StringArray::from(values))],
    )?])
}
