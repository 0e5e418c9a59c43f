//! The query thread: parses and runs `search_messages` queries against the latest reloaded
//! snapshot, off the shards, so a slow query delays only other queries.

use super::schema::fields_of;
use super::{Hits, QueryError, QueryText, QueryWork};
use crate::json::quoted_len;
use crossbeam_channel::Receiver;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, QueryParser, QueryParserError, TermQuery};
use tantivy::schema::{document::Document, Field, IndexRecordOption, Schema};
use tantivy::{Index, IndexReader, TantivyDocument, Term};

pub struct QueryRunner {
    reader: IndexReader,
    parser: QueryParser,
    thread_id: Field,
    project_id: Field,
    schema: Schema,
    queries_waiting: Arc<AtomicUsize>,
}

impl QueryRunner {
    pub fn new(index: &Index, reader: IndexReader, queries_waiting: Arc<AtomicUsize>) -> Self {
        let schema = index.schema();
        // The schema was built by schema::build, so every field exists.
        let fields = fields_of(&schema).unwrap_or_else(|e| panic!("index schema: {e}"));
        let parser = QueryParser::for_index(index, vec![fields.subject, fields.body]);
        QueryRunner {
            reader,
            parser,
            thread_id: fields.thread_id,
            project_id: fields.project_id,
            schema,
            queries_waiting,
        }
    }

    pub fn run(self, work: Receiver<QueryWork>) {
        for item in work {
            let QueryWork::Job(job) = item else {
                return;
            };
            let result = match &job.query {
                QueryText::Parsed(text) => self.parse(text).and_then(|query| {
                    self.collect(&*query, job.limit, job.max_result_bytes, job.at_least_one)
                }),
                QueryText::Thread(project_id, thread_id) => {
                    let term = |field, text| -> (Occur, Box<dyn Query>) {
                        let term = Term::from_field_text(field, text);
                        (
                            Occur::Must,
                            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                        )
                    };
                    let query = BooleanQuery::new(vec![
                        term(self.project_id, project_id),
                        term(self.thread_id, thread_id),
                    ]);
                    self.collect(&query, job.limit, job.max_result_bytes, job.at_least_one)
                }
            };
            self.queries_waiting.fetch_sub(1, Ordering::AcqRel);
            job.reply.send(result);
        }
    }

    /// Parses `search_messages` query syntax (default fields: subject and body).
    fn parse(&self, text: &str) -> Result<Box<dyn Query>, QueryError> {
        self.parser.parse_query(text).map_err(|error| match error {
            QueryParserError::FieldNotIndexed(field) => QueryError::Syntax(format!(
                "{field} is returned with each hit but is not searchable; search by \
                     from, to, project_id, subject or body"
            )),
            other => QueryError::Syntax(other.to_string()),
        })
    }

    /// Runs `query`: the hits, best first, as a JSON array of named documents (every field an
    /// array), and whether any were left out (a hit past `limit` exists, or the byte bound
    /// stopped the list). Hits are added while the array, counted as sent (raw plus escaped),
    /// stays within `max_result_bytes`; with `at_least_one` the best hit is always included.
    fn collect(
        &self,
        query: &dyn Query,
        limit: usize,
        max_result_bytes: usize,
        at_least_one: bool,
    ) -> Result<Hits, QueryError> {
        let searcher = self.reader.searcher();
        let limit = limit.max(1);
        // One more than asked, to tell whether the list is whole.
        let mut hits = searcher
            .search(query, &TopDocs::with_limit(limit + 1).order_by_score())
            .map_err(|e| QueryError::Unavailable(e.to_string()))?;
        let mut cut = hits.len() > limit;
        hits.truncate(limit);
        let mut out = String::from("[");
        // `[]`, raw and escaped with its quotes.
        let mut sent_bytes = 2 + 4;
        for (index, (_score, address)) in hits.into_iter().enumerate() {
            let document: TantivyDocument = searcher
                .doc(address)
                .map_err(|e| QueryError::Unavailable(e.to_string()))?;
            let json = document.to_json(&self.schema);
            // The hit, raw and escaped (its quotes are not added: it sits inside the array's),
            // plus its comma in both forms.
            let cost = json.len() + quoted_len(&json) - 2 + 2;
            if sent_bytes + cost > max_result_bytes {
                match (index, at_least_one) {
                    (0, false) => return Err(QueryError::DoesNotFit),
                    (0, true) => {}
                    _ => {
                        cut = true;
                        break;
                    }
                }
            }
            sent_bytes += cost;
            if index > 0 {
                out.push(',');
            }
            out.push_str(&json);
        }
        out.push(']');
        debug_assert!(out.len() + quoted_len(&out) <= sent_bytes);
        Ok(Hits { json: out, cut })
    }
}
