//! Read-only sessions run only queries: one `SELECT` (or `EXPLAIN` of one) at a time. DDL,
//! DML, `COPY`, `SET`, `CREATE`/`DROP` of anything (`CREATE EXTERNAL TABLE` over any path
//! included) and every other statement are refused before planning, and planning runs with
//! DDL, DML and statements disallowed as a second guard (which also stops `SELECT ...
//! INTO`). DataFusion has no file-writing or path-reading functions. The viewer is always
//! read-only; `cellshard sql` and `cellshard.sql` are unless the caller allows writes.

use datafusion::execution::context::SQLOptions;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::sqlparser::ast::Statement as Sql;

/// SQL options for every read-only query.
pub fn options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Ok when `sql` is a single query; otherwise the reason it is refused.
pub fn check(sql: &str) -> Result<(), String> {
    let statements = DFParser::parse_sql(sql).map_err(|e| e.to_string())?;
    if statements.len() != 1 {
        return Err(format!(
            "one statement at a time, please ({} given)",
            statements.len()
        ));
    }
    let ok = match &statements[0] {
        Statement::Statement(s) => is_query(s),
        Statement::Explain(e) => match e.statement.as_ref() {
            Statement::Statement(s) => is_query(s),
            _ => false,
        },
        _ => false,
    };
    if ok {
        return Ok(());
    }
    let verb: Vec<String> = sql
        .split_whitespace()
        .take(2)
        .map(|w| w.to_uppercase())
        .collect();
    Err(format!(
        "read-only: {} statements are refused (only SELECT, WITH ... SELECT and EXPLAIN SELECT run; `cellshard sql --allow-writes` or `cellshard.sql(..., allow_writes=True)` runs others)",
        verb.join(" ")
    ))
}

fn is_query(s: &Sql) -> bool {
    match s {
        Sql::Query(_) => true,
        Sql::Explain { statement, .. } => is_query(statement),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_queries_pass() {
        for ok in [
            "SELECT 1",
            "WITH t AS (SELECT 1 AS x) SELECT x FROM t",
            "EXPLAIN SELECT * FROM sites",
            "select site_id from sites where plate = 1;",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for bad in [
            "CREATE TABLE t AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '/tmp/x'",
            "DROP VIEW controls",
            "DROP TABLE sites",
            "INSERT INTO sites SELECT * FROM sites",
            "DELETE FROM sites",
            "UPDATE sites SET plate = 2",
            "COPY (SELECT 1) TO '/tmp/out.parquet'",
            "SET datafusion.execution.batch_size = 1",
            "SELECT 1; DROP TABLE sites",
            "EXPLAIN COPY (SELECT 1) TO '/tmp/x.csv'",
        ] {
            let e = check(bad).unwrap_err();
            assert!(
                e.contains("read-only") || e.contains("one statement"),
                "{bad}: {e}"
            );
        }
    }
}
