//! Paired data for the cross-modal protocol: items with a text input, optionally an image of the
//! same thing, an answer, and a fixed validation/test split — the paper's `{task}_{val,test}`
//! files. The six built-in tasks live in `data/tasks/*.tsv` (columns `input output split image`)
//! with their images in `data/images/` (compiled into the native binary; the page fetches them).

use std::sync::Arc;

use super::task::{BUILTIN, Example, Input, MAX_EXAMPLES};
use crate::error::{Error, Result};

/// Which side of an item a prompt shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Modality {
    /// The text input, e.g. `France`.
    Text,
    /// The item's image, e.g. the French flag.
    Image,
}

/// One line of a built-in task file, before its image is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemLine {
    /// Text input.
    pub input: String,
    /// Answer.
    pub output: String,
    /// `true` for the validation split, `false` for test.
    pub val: bool,
    /// Image path relative to `data/images/`, if the item has one.
    pub image: Option<String>,
}

/// One item: the same thing as text and (maybe) as an image, with its answer.
#[derive(Debug, Clone)]
pub struct Item {
    /// Text input.
    pub text: String,
    /// Answer.
    pub output: String,
    /// Image file name (relative to `data/images/`) and its bytes.
    pub image: Option<(String, Arc<Vec<u8>>)>,
}

impl Item {
    /// The item's input in `m`, if it has one in that modality.
    pub fn input(&self, m: Modality) -> Option<Input> {
        match m {
            Modality::Text => Some(Input::Text(self.text.clone())),
            Modality::Image => self.image.as_ref().map(|(label, bytes)| Input::Image {
                bytes: bytes.to_vec(),
                label: label.clone(),
            }),
        }
    }

    /// The item as an example in `m` (`None` when it has no image and `m` is an image).
    pub fn example(&self, m: Modality) -> Option<Example> {
        Some(Example {
            input: self.input(m)?,
            output: self.output.clone(),
        })
    }
}

/// A task with a fixed validation/test split of paired items.
#[derive(Debug, Clone)]
pub struct PairedTask {
    /// Task name.
    pub name: String,
    /// Instruction ending in `:`, if known.
    pub instruction: Option<String>,
    /// Validation items (vectors are extracted here; the patch layer is chosen here).
    pub val: Vec<Item>,
    /// Test items (reported accuracies).
    pub test: Vec<Item>,
}

/// Counts shown by `taskvec tasks --json`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaskSummary {
    /// Task name.
    pub name: String,
    /// Items (all have text).
    pub text_items: usize,
    /// Items that also have an image.
    pub image_items: usize,
    /// The paper's instruction.
    pub instruction: String,
}

/// Parses a built-in task file: `input<TAB>output<TAB>val|test<TAB>image-or-'-'` lines, `#`
/// comments and blank lines skipped.
pub fn parse_items(text: &str) -> Result<Vec<ItemLine>> {
    let mut out: Vec<ItemLine> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() >= MAX_EXAMPLES {
            return Err(Error::TaskVector(format!(
                "more than {MAX_EXAMPLES} items (line {})",
                i + 1
            )));
        }
        let cols: Vec<&str> = line.split('\t').map(str::trim).collect();
        let bad = |why: &str| Error::TaskVector(format!("line {}: {why}: {line:?}", i + 1));
        let [input, output, split, image] = cols[..] else {
            return Err(bad("expected 'input<TAB>output<TAB>split<TAB>image'"));
        };
        if input.is_empty() || output.is_empty() {
            return Err(bad("empty input or output"));
        }
        let val = match split {
            "val" => true,
            "test" => false,
            _ => return Err(bad("the split must be 'val' or 'test'")),
        };
        if out.iter().any(|o| o.input == input) {
            return Err(bad("duplicate input"));
        }
        out.push(ItemLine {
            input: input.into(),
            output: output.into(),
            val,
            image: (image != "-" && !image.is_empty()).then(|| image.to_string()),
        });
    }
    Ok(out)
}

fn builtin_entry(name: &str) -> Result<&'static (&'static str, &'static str, &'static str)> {
    let key = name.to_ascii_lowercase().replace('-', "_");
    BUILTIN.iter().find(|(n, _, _)| *n == key).ok_or_else(|| {
        let names: Vec<&str> = BUILTIN.iter().map(|b| b.0).collect();
        Error::TaskVector(format!(
            "unknown task '{name}'; built-in tasks: {}",
            names.join(", ")
        ))
    })
}

/// The lines of a built-in task (`country_capital`, `Country-Capital` … all work).
pub fn builtin_lines(name: &str) -> Result<(&'static str, &'static str, Vec<ItemLine>)> {
    let (n, instr, data) = builtin_entry(name)?;
    Ok((n, instr, parse_items(data)?))
}

/// Summaries of the six built-in tasks.
pub fn summaries() -> Result<Vec<TaskSummary>> {
    BUILTIN
        .iter()
        .map(|(name, instr, _)| {
            let (_, _, lines) = builtin_lines(name)?;
            Ok(TaskSummary {
                name: name.to_string(),
                text_items: lines.len(),
                image_items: lines.iter().filter(|l| l.image.is_some()).count(),
                instruction: instr.to_string(),
            })
        })
        .collect()
}

impl PairedTask {
    /// A built-in task with its images read by `image(path)` (a path relative to
    /// `data/images/`); with `with_images = false` the items are text-only.
    pub fn builtin_with(
        name: &str,
        mut image: impl FnMut(&str) -> Result<Vec<u8>>,
        with_images: bool,
    ) -> Result<PairedTask> {
        let (n, instr, lines) = builtin_lines(name)?;
        let (mut val, mut test) = (Vec::new(), Vec::new());
        for l in lines {
            let img = match (&l.image, with_images) {
                (Some(p), true) => Some((p.clone(), Arc::new(image(p)?))),
                _ => None,
            };
            let item = Item {
                text: l.input,
                output: l.output,
                image: img,
            };
            if l.val { &mut val } else { &mut test }.push(item);
        }
        Ok(PairedTask {
            name: n.to_string(),
            instruction: Some(instr.to_string()),
            val,
            test,
        })
    }

    /// A built-in task with the images compiled into this (native) build.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn builtin(name: &str) -> Result<PairedTask> {
        Self::builtin_with(name, builtin_image, true)
    }

    /// A task from plain examples (text or image inputs) split by a seeded shuffle: the first
    /// third validation, the rest test. Image examples become image-only items.
    pub fn from_examples(task: &super::Task, seed: u64) -> Result<PairedTask> {
        let (val, test) = task.split(seed)?;
        let item = |e: Example| match e.input {
            Input::Text(t) => Item {
                text: t,
                output: e.output,
                image: None,
            },
            Input::Image { bytes, label } => Item {
                text: label.clone(),
                output: e.output,
                image: Some((label, Arc::new(bytes))),
            },
        };
        Ok(PairedTask {
            name: task.name.clone(),
            instruction: task.instruction.clone(),
            val: val.into_iter().map(item).collect(),
            test: test.into_iter().map(item).collect(),
        })
    }

    /// Items of a split usable in all of `modalities` (an image modality needs an image).
    pub fn usable(items: &[Item], modalities: &[Modality]) -> Vec<Item> {
        items
            .iter()
            .filter(|it| !modalities.contains(&Modality::Image) || it.image.is_some())
            .cloned()
            .collect()
    }
}

/// The built-in images compiled into the native binary.
#[cfg(not(target_arch = "wasm32"))]
static IMAGES: include_dir::Dir<'static> =
    include_dir::include_dir!("$CARGO_MANIFEST_DIR/data/images");

/// A built-in image by its path relative to `data/images/` (native builds).
#[cfg(not(target_arch = "wasm32"))]
pub fn builtin_image(path: &str) -> Result<Vec<u8>> {
    IMAGES
        .get_file(path)
        .map(|f| f.contents().to_vec())
        .ok_or_else(|| Error::TaskVector(format!("no built-in image '{path}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_columns() {
        let l = parse_items("# input\toutput\tsplit\timage\nFrance\tParis\tval\tflags/fr.png\nPeru\tLima\ttest\t-\n").unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].image.as_deref(), Some("flags/fr.png"));
        assert!(l[0].val && !l[1].val && l[1].image.is_none());
        for bad in [
            "France\tParis\n",
            "France\tParis\ttrain\t-\n",
            "France\t\tval\t-\n",
            "A\tB\tval\t-\nA\tC\ttest\t-\n",
        ] {
            assert!(parse_items(bad).is_err(), "{bad:?}");
        }
    }
}
