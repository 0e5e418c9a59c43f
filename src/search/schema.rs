//! The index schema and the index directory.

use super::{index_error, SearchError};
use std::path::Path;
use tantivy::schema::{Field, Schema, STORED, STRING, TEXT};
use tantivy::Index;

/// The fields of one message document. Text fields are tokenised for full-text search; ids
/// and names are exact-match (`from:BlueLake`).
#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub id: Field,
    pub project_id: Field,
    pub from: Field,
    pub to: Field,
    pub subject: Field,
    pub body: Field,
    pub timestamp: Field,
}

pub fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let fields = Fields {
        id: builder.add_text_field("id", STRING | STORED),
        project_id: builder.add_text_field("project_id", STRING | STORED),
        from: builder.add_text_field("from", STRING | STORED),
        to: builder.add_text_field("to", STRING | STORED),
        subject: builder.add_text_field("subject", TEXT | STORED),
        body: builder.add_text_field("body", TEXT | STORED),
        timestamp: builder.add_text_field("timestamp", STRING | STORED),
    };
    (builder.build(), fields)
}

pub fn fields_of(schema: &Schema) -> Result<Fields, tantivy::TantivyError> {
    Ok(Fields {
        id: schema.get_field("id")?,
        project_id: schema.get_field("project_id")?,
        from: schema.get_field("from")?,
        to: schema.get_field("to")?,
        subject: schema.get_field("subject")?,
        body: schema.get_field("body")?,
        timestamp: schema.get_field("timestamp")?,
    })
}

/// Creates a fresh index at `path`. Mail lives in memory, so an index from an earlier run
/// would describe messages that no longer exist: it is deleted. A directory that holds
/// anything other than a Tantivy index is refused rather than wiped.
pub fn create_index(path: &Path) -> Result<Index, SearchError> {
    if path.exists() {
        let entries: Vec<_> = std::fs::read_dir(path)
            .map_err(|e| index_error(path, e))?
            .filter_map(Result::ok)
            .collect();
        let is_index = path.join("meta.json").exists();
        if !entries.is_empty() && !is_index {
            return Err(index_error(
                path,
                "exists, is not empty and is not a search index; refusing to delete it \
                 (point INDEX_PATH at an empty or new directory)",
            ));
        }
        std::fs::remove_dir_all(path).map_err(|e| index_error(path, e))?;
    }
    std::fs::create_dir_all(path).map_err(|e| index_error(path, e))?;
    let (schema, _) = build();
    Index::create_in_dir(path, schema).map_err(|e| index_error(path, e))
}
