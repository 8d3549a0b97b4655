//! The built-in tasks and the paper table's rows, for the page's menus.

use wasm_bindgen::prelude::*;

use super::{js_err, to_js};
use crate::taskvec::dataset::{builtin_lines, summaries};
use crate::taskvec::task::BUILTIN;

/// The built-in tasks: name, instruction, counts and items (input, output, split, image path
/// relative to `data/images/` or null).
#[wasm_bindgen(js_name = builtinTasks)]
pub fn builtin_tasks() -> Result<JsValue, JsError> {
    let sums = summaries().map_err(js_err)?;
    let tasks: Vec<serde_json::Value> = BUILTIN
        .iter()
        .zip(sums)
        .map(|((name, _, _), sum)| {
            let (_, _, lines) = builtin_lines(name).map_err(js_err)?;
            let items: Vec<serde_json::Value> = lines
                .iter()
                .map(|l| {
                    serde_json::json!({"input": l.input, "output": l.output,
                        "split": if l.val { "val" } else { "test" }, "image": l.image})
                })
                .collect();
            let pairs: Vec<(String, String)> = lines
                .iter()
                .map(|l| (l.input.clone(), l.output.clone()))
                .collect();
            Ok(
                serde_json::json!({"name": name, "instruction": sum.instruction,
                "text_items": sum.text_items, "image_items": sum.image_items,
                "pairs": pairs, "items": items}),
            )
        })
        .collect::<Result<_, JsError>>()?;
    to_js(&tasks)
}

/// The table's rows: id, label, whether it needs images.
#[wasm_bindgen(js_name = tableRows)]
pub fn table_rows() -> Result<JsValue, JsError> {
    let rows: Vec<serde_json::Value> = crate::taskvec::table::ROWS
        .iter()
        .map(|r| serde_json::json!({"id": r.id(), "label": r.label(), "images": r.needs_images()}))
        .collect();
    to_js(&rows)
}
