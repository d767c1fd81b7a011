//! Refusing introspection when it is off: a query selecting `__schema` or `__type`
//! anywhere (also in a fragment) is refused whole with the error [`REFUSED`], rather than
//! answered with `null` as the schema's own switch does. `__typename` stays allowed.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery};
use async_graphql::parser::types::{ExecutableDocument, Selection, SelectionSet};
use async_graphql::{ServerError, ServerResult, Variables};

/// The message of the error refusing an introspection query.
pub(crate) const REFUSED: &str =
    "introspection is disabled on this server ([graphql] introspection = false)";

/// The extension refusing introspection queries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RefuseIntrospection;

impl ExtensionFactory for RefuseIntrospection {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Self)
    }
}

#[async_trait::async_trait]
impl Extension for RefuseIntrospection {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        if introspects(&document) {
            return Err(ServerError::new(REFUSED, None));
        }
        Ok(document)
    }
}

/// Whether `document` selects `__schema` or `__type` anywhere.
fn introspects(document: &ExecutableDocument) -> bool {
    document
        .operations
        .iter()
        .any(|(_, operation)| selects_introspection(&operation.node.selection_set.node))
        || document
            .fragments
            .values()
            .any(|fragment| selects_introspection(&fragment.node.selection_set.node))
}

fn selects_introspection(set: &SelectionSet) -> bool {
    set.items.iter().any(|selection| match &selection.node {
        Selection::Field(field) => {
            let name = field.node.name.node.as_str();
            name == "__schema"
                || name == "__type"
                || selects_introspection(&field.node.selection_set.node)
        }
        Selection::InlineFragment(fragment) => {
            selects_introspection(&fragment.node.selection_set.node)
        }
        // The fragment's own selection is checked with the document's fragments.
        Selection::FragmentSpread(_) => false,
    })
}
