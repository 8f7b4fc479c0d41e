//! The XML shared by every payload: a reader that collects the text of a fixed set of elements
//! below an `<xml>` root, and a writer with entity escaping.
//!
//! The reader never processes DTDs: a `<!DOCTYPE` is an error, and only the five predefined
//! entities and character references are resolved. It streams, so nesting depth costs no stack.

use core::fmt::Display;

use quick_xml::Reader;
use quick_xml::errors::{Error as QuickError, IllFormedError, SyntaxError};
use quick_xml::events::{BytesRef, Event};

use serde_json::{Map, Value};

use crate::error::Error;

/// `true` for the characters XML 1.0 allows in a document (the `Char` production): tab, line
/// feed, carriage return and every scalar value from U+0020 but the surrogates, U+FFFE and
/// U+FFFF. A string holding any other character cannot be written as XML, not even escaped.
///
/// ```
/// assert!(kefu_payload::is_xml_char('你'));
/// assert!(!kefu_payload::is_xml_char('\u{1}'));
/// ```
pub const fn is_xml_char(character: char) -> bool {
    matches!(
        character,
        '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..
    )
}

const fn is_xml_whitespace(character: char) -> bool {
    matches!(character, ' ' | '\t' | '\n' | '\r')
}

/// Parses decimal digits with an optional leading `-`, allowing XML whitespace around them.
/// `Ok(None)` for blank text.
pub(crate) fn parse_number<T: core::str::FromStr>(
    field: &'static str,
    text: &str,
    expected: &'static str,
) -> Result<Option<T>, Error> {
    let trimmed = text.trim_matches(is_xml_whitespace);
    if trimmed.is_empty() {
        return Ok(None);
    }
    let digits = trimmed.strip_prefix('-').unwrap_or(trimmed);
    // `FromStr` alone would also take a leading '+', which is not a platform number.
    let parsed = if !digits.is_empty() && digits.bytes().all(|byte| byte.is_ascii_digit()) {
        trimmed.parse().ok()
    } else {
        None
    };
    parsed.map(Some).ok_or_else(|| Error::InvalidValue {
        field,
        found: text.to_owned(),
        expected,
    })
}

/// Reads `input`, whose root must be `<xml>`, and returns the text of each element in `leaves`.
///
/// A leaf is a `/`-separated path below the root, such as `msg` or `content/msg`. Its text is the
/// concatenation of all its text, CDATA and reference segments, with XML 1.0 line-end
/// normalisation, and is never trimmed. Elements on no leaf's path are skipped with everything in
/// them; text between elements is ignored. A leaf may appear once and may not contain elements.
pub(crate) fn read_leaves<const N: usize>(
    input: &str,
    leaves: [&'static str; N],
) -> Result<[Option<String>; N], Error> {
    walk(input, Collector::new(leaves))
}

/// How deep elements may nest below the root in [`read_tree`].
pub const MAX_TREE_DEPTH: usize = 32;

/// Reads `<xml>…</xml>` into a JSON object, with the same hardening as every payload reader (no
/// DTD, only the predefined entities, XML 1.0 characters only), keeping every element.
///
/// An element with only text becomes a string, an element with child elements becomes an object
/// (its text between children is dropped), and a name repeated among siblings becomes an array.
/// Elements may nest [`MAX_TREE_DEPTH`] levels below the root. A root with no child elements
/// gives an empty object. This is a view for reading: a one-item list and a single element look
/// the same.
///
/// ```
/// use kefu_payload::read_tree;
/// let tree = read_tree("<xml><MsgType><![CDATA[text]]></MsgType><A><B>1</B><B>2</B></A></xml>").unwrap();
/// assert_eq!(tree["MsgType"], "text");
/// assert_eq!(tree["A"]["B"], serde_json::json!(["1", "2"]));
/// assert!(read_tree("<!DOCTYPE x><xml/>").unwrap_err().is_doctype());
/// ```
pub fn read_tree(input: &str) -> Result<Map<String, Value>, Error> {
    walk(input, TreeBuilder::default())
}

/// What a reader does with the document's structure; [`walk`] does the hardened tokenising.
trait Visitor {
    type Output;
    fn open(&mut self, offset: u64, name: &str) -> Result<(), Error>;
    fn close(&mut self);
    fn text(&mut self, offset: u64, text: &str) -> Result<(), Error>;
    fn finish(self, offset: u64) -> Result<Self::Output, Error>;
}

/// The one hardened pass over a document that every reader shares.
fn walk<V: Visitor>(input: &str, mut visitor: V) -> Result<V::Output, Error> {
    if let Some((offset, character)) = input.char_indices().find(|(_, c)| !is_xml_char(*c)) {
        return Err(Error::IllegalXmlChar {
            offset: offset as u64,
            character,
        });
    }
    let mut reader = Reader::from_str(input);
    reader.config_mut().enable_all_checks(true);
    loop {
        let offset = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|error| reader_error(error, reader.error_position()))?;
        match event {
            Event::Start(start) => visitor.open(offset, utf8(start.name().as_ref(), offset)?)?,
            Event::Empty(start) => {
                visitor.open(offset, utf8(start.name().as_ref(), offset)?)?;
                visitor.close();
            }
            Event::End(_) => visitor.close(),
            Event::Text(text) => {
                let content = text
                    .xml10_content()
                    .map_err(|error| syntax(offset, error))?;
                visitor.text(offset, &content)?;
            }
            Event::CData(cdata) => {
                let content = cdata
                    .xml10_content()
                    .map_err(|error| syntax(offset, error))?;
                visitor.text(offset, &content)?;
            }
            Event::GeneralRef(reference) => {
                let character = resolve_reference(&reference, offset)?;
                visitor.text(offset, character.encode_utf8(&mut [0; 4]))?;
            }
            Event::DocType(_) => return Err(Error::Doctype { offset }),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => return visitor.finish(offset),
        }
    }
}

fn syntax(offset: u64, message: impl Display) -> Error {
    Error::XmlSyntax {
        offset,
        message: message.to_string(),
    }
}

fn reader_error(error: QuickError, offset: u64) -> Error {
    match error {
        // A broken DOCTYPE is still a DOCTYPE: report the policy, not the typo.
        QuickError::Syntax(SyntaxError::UnclosedDoctype)
        | QuickError::IllFormed(IllFormedError::MissingDoctypeName) => Error::Doctype { offset },
        // The reader's own wording ("not found before end of input") misleads for the usual
        // cause, an unescaped '&' in the middle of a text.
        QuickError::IllFormed(IllFormedError::UnclosedReference) => syntax(
            offset,
            "'&' does not start a reference (&name; or &#number;); escape a literal '&' as &amp;",
        ),
        other => syntax(offset, other),
    }
}

fn utf8(bytes: &[u8], offset: u64) -> Result<&str, Error> {
    core::str::from_utf8(bytes).map_err(|error| syntax(offset, error))
}

fn resolve_reference(reference: &BytesRef<'_>, offset: u64) -> Result<char, Error> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(character)) if is_xml_char(character) => Ok(character),
            Ok(Some(character)) => Err(Error::IllegalXmlChar { offset, character }),
            Ok(None) | Err(_) => Err(syntax(
                offset,
                format_args!(
                    "&{}; is not a valid character reference",
                    String::from_utf8_lossy(reference)
                ),
            )),
        };
    }
    match &**reference {
        b"lt" => Ok('<'),
        b"gt" => Ok('>'),
        b"amp" => Ok('&'),
        b"apos" => Ok('\''),
        b"quot" => Ok('"'),
        name => Err(Error::UnknownEntity {
            offset,
            name: String::from_utf8_lossy(name).into_owned(),
        }),
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Root {
    NotSeen,
    Open,
    Closed,
}

/// Tracks where the reader is and collects the text of the leaves.
struct Collector<const N: usize> {
    leaves: [&'static str; N],
    values: [Option<String>; N],
    root: Root,
    /// The path below the root, as long as it leads to a leaf.
    path: String,
    /// `path` lengths to restore on each closing tag.
    path_lengths: Vec<usize>,
    /// Depth inside an element that leads to no leaf; 0 when not in one.
    skipped_depth: usize,
    /// The leaf being read, and its text so far.
    capture: Option<(usize, String)>,
}

impl<const N: usize> Collector<N> {
    fn new(leaves: [&'static str; N]) -> Self {
        Collector {
            leaves,
            values: core::array::from_fn(|_| None),
            root: Root::NotSeen,
            path: String::new(),
            path_lengths: Vec::new(),
            skipped_depth: 0,
            capture: None,
        }
    }
}

impl<const N: usize> Visitor for Collector<N> {
    type Output = [Option<String>; N];

    fn open(&mut self, offset: u64, name: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(syntax(
                offset,
                "'<' is not followed by an element name; escape a literal '<' as &lt;",
            ));
        }
        match self.root {
            Root::NotSeen if name == "xml" => {
                self.root = Root::Open;
                return Ok(());
            }
            Root::NotSeen => {
                return Err(Error::WrongRoot {
                    found: name.to_owned(),
                });
            }
            Root::Closed => {
                return Err(syntax(
                    offset,
                    format_args!("element <{name}> after the end of the root element"),
                ));
            }
            Root::Open => {}
        }
        if let Some((leaf, _)) = &self.capture {
            return Err(Error::UnexpectedChild {
                element: self.leaves[*leaf],
                child: name.to_owned(),
            });
        }
        if self.skipped_depth > 0 {
            self.skipped_depth += 1;
            return Ok(());
        }
        let parent_length = self.path.len();
        if !self.path.is_empty() {
            self.path.push('/');
        }
        self.path.push_str(name);
        if let Some(leaf) = self.leaves.iter().position(|leaf| *leaf == self.path) {
            if self.values[leaf].is_some() {
                return Err(Error::DuplicateElement {
                    element: self.leaves[leaf],
                });
            }
            self.capture = Some((leaf, String::new()));
        } else if !self.leaves.iter().any(|leaf| {
            leaf.strip_prefix(self.path.as_str())
                .is_some_and(|rest| rest.starts_with('/'))
        }) {
            self.path.truncate(parent_length);
            self.skipped_depth = 1;
            return Ok(());
        }
        self.path_lengths.push(parent_length);
        Ok(())
    }

    fn close(&mut self) {
        if self.skipped_depth > 0 {
            self.skipped_depth -= 1;
        } else if let Some(parent_length) = self.path_lengths.pop() {
            if let Some((leaf, text)) = self.capture.take() {
                self.values[leaf] = Some(text);
            }
            self.path.truncate(parent_length);
        } else {
            self.root = Root::Closed;
        }
    }

    fn text(&mut self, offset: u64, text: &str) -> Result<(), Error> {
        if let Some((_, captured)) = &mut self.capture {
            captured.push_str(text);
        } else if self.root != Root::Open && !text.chars().all(is_xml_whitespace) {
            return Err(syntax(offset, "text outside the root element <xml>"));
        }
        Ok(())
    }

    fn finish(self, offset: u64) -> Result<[Option<String>; N], Error> {
        match self.root {
            Root::NotSeen => Err(Error::NoRoot),
            Root::Open => Err(syntax(
                offset,
                "the document ends before the root element is closed with </xml>",
            )),
            Root::Closed => Ok(self.values),
        }
    }
}

/// An element being read by [`TreeBuilder`]: its name, its text so far and its children.
struct Node {
    name: String,
    text: String,
    children: Vec<(String, Value)>,
}

impl Node {
    fn into_value(self) -> (String, Value) {
        if self.children.is_empty() {
            return (self.name, Value::String(self.text));
        }
        let mut object = Map::new();
        for (name, value) in self.children {
            match object.get_mut(&name) {
                Some(Value::Array(items)) => items.push(value),
                Some(first) => {
                    let first = first.take();
                    object.insert(name, Value::Array(vec![first, value]));
                }
                None => {
                    object.insert(name, value);
                }
            }
        }
        (self.name, Value::Object(object))
    }
}

/// Builds [`read_tree`]'s JSON object.
#[derive(Default)]
struct TreeBuilder {
    /// The open elements, the root first.
    stack: Vec<Node>,
    /// The root's children, once the root is closed.
    root: Option<Map<String, Value>>,
}

impl Visitor for TreeBuilder {
    type Output = Map<String, Value>;

    fn open(&mut self, offset: u64, name: &str) -> Result<(), Error> {
        if name.is_empty() {
            return Err(syntax(
                offset,
                "'<' is not followed by an element name; escape a literal '<' as &lt;",
            ));
        }
        if self.root.is_some() {
            return Err(syntax(
                offset,
                format_args!("element <{name}> after the end of the root element"),
            ));
        }
        if self.stack.is_empty() && name != "xml" {
            return Err(Error::WrongRoot {
                found: name.to_owned(),
            });
        }
        if self.stack.len() > MAX_TREE_DEPTH {
            return Err(Error::TooDeep {
                max: MAX_TREE_DEPTH,
            });
        }
        self.stack.push(Node {
            name: name.to_owned(),
            text: String::new(),
            children: Vec::new(),
        });
        Ok(())
    }

    fn close(&mut self) {
        let Some(node) = self.stack.pop() else {
            return;
        };
        let (name, value) = node.into_value();
        match self.stack.last_mut() {
            Some(parent) => parent.children.push((name, value)),
            None => {
                self.root = Some(match value {
                    Value::Object(object) => object,
                    _ => Map::new(),
                });
            }
        }
    }

    fn text(&mut self, offset: u64, text: &str) -> Result<(), Error> {
        match self.stack.last_mut() {
            Some(node) => node.text.push_str(text),
            None if !text.chars().all(is_xml_whitespace) => {
                return Err(syntax(offset, "text outside the root element <xml>"));
            }
            None => {}
        }
        Ok(())
    }

    fn finish(self, offset: u64) -> Result<Map<String, Value>, Error> {
        match self.root {
            Some(root) => Ok(root),
            None if self.stack.is_empty() => Err(Error::NoRoot),
            None => Err(syntax(
                offset,
                "the document ends before the root element is closed with </xml>",
            )),
        }
    }
}

/// Writes `<xml>…</xml>` documents: escaped text, CDATA where envelopes use it, and numbers.
///
/// Text is entity-escaped (`&`, `<`, `>`) and a carriage return is written as `&#13;`, so that
/// the reader's line-end normalisation gives back exactly the original text. A character XML 1.0
/// cannot carry is an error naming the element and the character position.
pub(crate) struct XmlWriter {
    out: String,
}

impl XmlWriter {
    pub(crate) fn new() -> XmlWriter {
        XmlWriter {
            out: String::from("<xml>"),
        }
    }

    pub(crate) fn open(&mut self, tag: &'static str) {
        self.out.push('<');
        self.out.push_str(tag);
        self.out.push('>');
    }

    pub(crate) fn close(&mut self, tag: &'static str) {
        self.out.push_str("</");
        self.out.push_str(tag);
        self.out.push('>');
    }

    /// `<tag>escaped text</tag>`.
    pub(crate) fn text(&mut self, tag: &'static str, value: &str) -> Result<(), Error> {
        check_representable(tag, value)?;
        self.open(tag);
        // The characters to escape are ASCII, so the runs between them are copied whole.
        let mut rest = value;
        while let Some(at) = rest
            .bytes()
            .position(|byte| matches!(byte, b'&' | b'<' | b'>' | b'\r'))
        {
            let (run, special) = rest.split_at_checked(at).unwrap_or((rest, ""));
            self.out.push_str(run);
            self.out.push_str(match special.as_bytes().first() {
                Some(b'&') => "&amp;",
                Some(b'<') => "&lt;",
                Some(b'>') => "&gt;",
                _ => "&#13;",
            });
            rest = special.get(1..).unwrap_or_default();
        }
        self.out.push_str(rest);
        self.close(tag);
        Ok(())
    }

    /// `<tag>escaped text</tag>` when there is a value; nothing otherwise.
    pub(crate) fn optional_text(
        &mut self,
        tag: &'static str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        match value {
            Some(value) => self.text(tag, value),
            None => Ok(()),
        }
    }

    /// `<tag><![CDATA[text]]></tag>`, splitting `]]>` as `]]]]><![CDATA[>` and writing each
    /// carriage return as `&#13;` between sections (inside CDATA it would become a line feed).
    pub(crate) fn cdata(&mut self, tag: &'static str, value: &str) -> Result<(), Error> {
        check_representable(tag, value)?;
        self.open(tag);
        if value.is_empty() {
            self.out.push_str("<![CDATA[]]>");
        }
        for (index, line) in value.split('\r').enumerate() {
            if index > 0 {
                self.out.push_str("&#13;");
            }
            if !line.is_empty() {
                self.out.push_str("<![CDATA[");
                self.out.push_str(&line.replace("]]>", "]]]]><![CDATA[>"));
                self.out.push_str("]]>");
            }
        }
        self.close(tag);
        Ok(())
    }

    /// `<tag>CDATA</tag>` when there is a value; nothing otherwise.
    pub(crate) fn optional_cdata(
        &mut self,
        tag: &'static str,
        value: Option<&str>,
    ) -> Result<(), Error> {
        match value {
            Some(value) => self.cdata(tag, value),
            None => Ok(()),
        }
    }

    /// `<tag>decimal</tag>`.
    pub(crate) fn number(&mut self, tag: &'static str, value: impl Display) {
        self.open(tag);
        self.out.push_str(&value.to_string());
        self.close(tag);
    }

    /// `<tag>decimal</tag>` when there is a value; nothing otherwise.
    pub(crate) fn optional_number(&mut self, tag: &'static str, value: Option<impl Display>) {
        if let Some(value) = value {
            self.number(tag, value);
        }
    }

    pub(crate) fn finish(mut self) -> String {
        self.out.push_str("</xml>");
        self.out
    }
}

fn check_representable(field: &'static str, value: &str) -> Result<(), Error> {
    match value
        .chars()
        .enumerate()
        .find(|(_, character)| !is_xml_char(*character))
    {
        Some((position, character)) => Err(Error::UnrepresentableChar {
            field,
            position,
            character,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn read_one(input: &str, leaf: &'static str) -> Result<Option<String>, Error> {
        read_leaves(input, [leaf]).map(|[value]| value)
    }

    #[test]
    fn xml_char_set() {
        for legal in [
            '\t', '\n', '\r', ' ', '\u{D7FF}', '\u{E000}', '\u{FFFD}', '😀',
        ] {
            assert!(is_xml_char(legal), "{legal:?}");
        }
        for illegal in [
            '\0', '\u{8}', '\u{B}', '\u{C}', '\u{E}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(illegal), "{illegal:?}");
        }
    }

    #[test]
    fn reads_escaped_cdata_and_mixed_text() {
        assert_eq!(
            read_one(
                "<xml><msg>a &lt;b&gt; &amp; &quot;&apos;</msg></xml>",
                "msg"
            )
            .unwrap(),
            Some("a <b> & \"'".into())
        );
        assert_eq!(
            read_one(
                "<xml><msg><![CDATA[<a href=\"x\">&amp;</a>]]></msg></xml>",
                "msg"
            )
            .unwrap(),
            Some("<a href=\"x\">&amp;</a>".into())
        );
        assert_eq!(
            read_one("<xml><msg><![CDATA[a]]]]><![CDATA[>b]]></msg></xml>", "msg").unwrap(),
            Some("a]]>b".into())
        );
        assert_eq!(
            read_one(
                "<xml><msg> x <![CDATA[ y ]]>&#x1F600;&#13;<!-- c --> z </msg></xml>",
                "msg"
            )
            .unwrap(),
            Some(" x  y 😀\r z ".into())
        );
    }

    #[test]
    fn normalises_literal_line_ends_but_keeps_referenced_ones() {
        assert_eq!(
            read_one(
                "<xml><msg>a\r\nb\rc<![CDATA[\r\n]]>&#13;&#10;</msg></xml>",
                "msg"
            )
            .unwrap(),
            Some("a\nb\nc\n\r\n".into())
        );
    }

    #[test]
    fn missing_and_empty_leaves() {
        assert_eq!(read_one("<xml></xml>", "msg").unwrap(), None);
        assert_eq!(read_one("<xml/>", "msg").unwrap(), None);
        assert_eq!(
            read_one("<xml><msg/></xml>", "msg").unwrap(),
            Some(String::new())
        );
        assert_eq!(
            read_one("<xml><msg></msg></xml>", "msg").unwrap(),
            Some(String::new())
        );
    }

    #[test]
    fn skips_unknown_elements_at_any_depth() {
        let input = "<?xml version=\"1.0\"?>\n<!-- hi --><xml>\n  <other><msg>no</msg><deep><x/></deep></other>\n  <content><junk><msg>no</msg></junk><msg>yes</msg></content><?pi x?>\n</xml>\n";
        assert_eq!(
            read_leaves(input, ["msg", "content/msg"]).unwrap(),
            [None, Some("yes".into())]
        );
    }

    #[test]
    fn attributes_and_bom_are_ignored() {
        assert_eq!(
            read_one(
                "\u{FEFF}<xml a=\"1\"><msg lang=\"zh\">hi</msg></xml>",
                "msg"
            )
            .unwrap(),
            Some("hi".into())
        );
    }

    #[test]
    fn deep_nesting_does_not_exhaust_the_stack() {
        let depth = 100_000;
        let input = format!("<xml>{}{}</xml>", "<a>".repeat(depth), "</a>".repeat(depth));
        assert_eq!(read_one(&input, "msg").unwrap(), None);
    }

    #[test]
    fn doctype_is_refused() {
        for input in [
            "<!DOCTYPE xml [<!ENTITY x \"y\">]><xml><msg>&x;</msg></xml>",
            "<!doctype xml><xml/>",
            "<xml><!DOCTYPE xml></xml>",
            "<!DOCTYPE",
            "<!DOCTYPE>",
        ] {
            let err = read_one(input, "msg").unwrap_err();
            assert!(err.is_doctype(), "{input}: {err:?}");
            assert_eq!(err.code(), -40002);
        }
        assert_eq!(
            read_one("<xml><!DOCTYPE xml></xml>", "msg").unwrap_err(),
            Error::Doctype { offset: 5 }
        );
    }

    #[test]
    fn illegal_characters_are_refused_raw_and_referenced() {
        assert_eq!(
            read_one("<xml><msg>a\u{1}</msg></xml>", "msg").unwrap_err(),
            Error::IllegalXmlChar {
                offset: 11,
                character: '\u{1}'
            }
        );
        assert_eq!(
            read_one("<xml><msg>a&#1;</msg></xml>", "msg").unwrap_err(),
            Error::IllegalXmlChar {
                offset: 11,
                character: '\u{1}'
            }
        );
        assert!(matches!(
            read_one("<xml><msg>&#xFFFE;</msg></xml>", "msg").unwrap_err(),
            Error::IllegalXmlChar {
                character: '\u{FFFE}',
                ..
            }
        ));
        let err = read_one("<xml><msg>&#0;</msg></xml>", "msg").unwrap_err();
        assert!(
            err.to_string()
                .contains("&#0; is not a valid character reference"),
            "{err}"
        );
    }

    #[test]
    fn only_predefined_entities() {
        assert_eq!(
            read_one("<xml><msg>&nbsp;</msg></xml>", "msg").unwrap_err(),
            Error::UnknownEntity {
                offset: 10,
                name: "nbsp".into()
            }
        );
        let err = read_one("<xml><msg>a & b</msg></xml>", "msg").unwrap_err();
        assert!(
            matches!(err, Error::XmlSyntax { offset: 12, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("escape a literal '&' as &amp;"),
            "{err}"
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(
            read_one("<root><msg/></root>", "msg").unwrap_err(),
            Error::WrongRoot {
                found: "root".into()
            }
        );
        assert_eq!(read_one("", "msg").unwrap_err(), Error::NoRoot);
        assert_eq!(read_one("  \n", "msg").unwrap_err(), Error::NoRoot);
        assert!(matches!(
            read_one("<xml><msg>", "msg").unwrap_err(),
            Error::XmlSyntax { .. }
        ));
        assert!(matches!(
            read_one("<xml><msg></xml>", "msg").unwrap_err(),
            Error::XmlSyntax { .. }
        ));
        assert!(matches!(
            read_one("<xml></xml><xml></xml>", "msg").unwrap_err(),
            Error::XmlSyntax { .. }
        ));
        assert!(matches!(
            read_one("hello<xml></xml>", "msg").unwrap_err(),
            Error::XmlSyntax { .. }
        ));
        assert!(matches!(
            read_one("<xml></xml>tail", "msg").unwrap_err(),
            Error::XmlSyntax { .. }
        ));
        assert_eq!(
            read_one("<xml><msg>a</msg><msg>b</msg></xml>", "msg").unwrap_err(),
            Error::DuplicateElement { element: "msg" }
        );
        let err = read_one("<xml><msg>a < b</msg></xml>", "msg").unwrap_err();
        assert!(
            matches!(err, Error::XmlSyntax { offset: 12, .. }),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("escape a literal '<' as &lt;"),
            "{err}"
        );
        assert_eq!(
            read_one("<xml><msg>go <a href=\"x\">here</a></msg></xml>", "msg").unwrap_err(),
            Error::UnexpectedChild {
                element: "msg",
                child: "a".into()
            }
        );
    }

    #[test]
    fn writer_escapes_text() {
        let mut writer = XmlWriter::new();
        writer.text("msg", "a<b>&c ]]> \"'\r\n\t").unwrap();
        assert_eq!(
            writer.finish(),
            "<xml><msg>a&lt;b&gt;&amp;c ]]&gt; \"'&#13;\n\t</msg></xml>"
        );
    }

    #[test]
    fn writer_splits_cdata() {
        let mut writer = XmlWriter::new();
        writer.cdata("A", "x]]>y").unwrap();
        writer.cdata("B", "").unwrap();
        writer.cdata("C", "\ra\r\rb\r").unwrap();
        assert_eq!(
            writer.finish(),
            "<xml><A><![CDATA[x]]]]><![CDATA[>y]]></A><B><![CDATA[]]></B><C>&#13;<![CDATA[a]]>&#13;&#13;<![CDATA[b]]>&#13;</C></xml>"
        );
    }

    #[test]
    fn writer_refuses_unrepresentable_characters() {
        let mut writer = XmlWriter::new();
        assert_eq!(
            writer.text("kefuname", "ab\u{FFFF}").unwrap_err(),
            Error::UnrepresentableChar {
                field: "kefuname",
                position: 2,
                character: '\u{FFFF}'
            }
        );
        assert_eq!(
            writer.cdata("Nonce", "😀\u{0}").unwrap_err(),
            Error::UnrepresentableChar {
                field: "Nonce",
                position: 1,
                character: '\0'
            }
        );
    }

    #[test]
    fn numbers_allow_surrounding_whitespace_only() {
        assert_eq!(
            parse_number::<u8>("channel", " 7\n", "0-9").unwrap(),
            Some(7)
        );
        assert_eq!(parse_number::<u8>("channel", " \t", "0-9").unwrap(), None);
        assert_eq!(
            parse_number::<u8>("channel", "1 2", "0-9").unwrap_err(),
            Error::InvalidValue {
                field: "channel",
                found: "1 2".into(),
                expected: "0-9"
            }
        );
        assert!(parse_number::<u8>("channel", "256", "0-9").is_err());
        assert!(parse_number::<u8>("channel", "+7", "0-9").is_err());
        assert!(parse_number::<i64>("from", "-", "n").is_err());
        assert!(parse_number::<i64>("from", "--1", "n").is_err());
        assert_eq!(parse_number::<i64>("from", "-12", "n").unwrap(), Some(-12));
        assert!(parse_number::<u8>("assessment", "-1", "n").is_err());
        assert!(parse_number::<i64>("from", "\u{3000}1", "n").is_err());
    }

    /// Strings of XML-legal characters, rich in the ones escaping must handle.
    pub(crate) fn xml_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("]]>".to_owned()),
            Just("]]]]><![CDATA[>".to_owned()),
            Just("<&>\"'".to_owned()),
            Just("&amp;&#13;".to_owned()),
            Just("\r\n".to_owned()),
            Just("\r".to_owned()),
            Just("\n\t ".to_owned()),
            Just("😀你好".to_owned()),
            any::<char>()
                .prop_filter("XML 1.0 character", |c| is_xml_char(*c))
                .prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..10).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #[test]
        fn escaped_text_round_trips(text in xml_text()) {
            let mut writer = XmlWriter::new();
            writer.text("msg", &text).unwrap();
            prop_assert_eq!(read_one(&writer.finish(), "msg").unwrap(), Some(text));
        }

        #[test]
        fn cdata_round_trips(text in xml_text()) {
            let mut writer = XmlWriter::new();
            writer.cdata("msg", &text).unwrap();
            prop_assert_eq!(read_one(&writer.finish(), "msg").unwrap(), Some(text));
        }

        #[test]
        fn reader_never_panics(input in "\\PC*") {
            let _ = read_leaves(&input, ["msg", "content/msg"]);
        }

        #[test]
        fn reader_never_panics_on_xml_like_input(
            input in proptest::collection::vec(
                prop_oneof![
                    Just("<xml>"), Just("</xml>"), Just("<msg>"), Just("</msg>"), Just("<msg/>"),
                    Just("<![CDATA["), Just("]]>"), Just("&"), Just(";"), Just("&#"), Just("<!--"),
                    Just("-->"), Just("<?"), Just("?>"), Just("<!DOCTYPE"), Just("<content>"),
                    Just("</content>"), Just("a"), Just(" "), Just("\r"), Just("x1F600"),
                ],
                0..24,
            )
        ) {
            let _ = read_leaves(&input.concat(), ["msg", "content/msg"]);
        }
    }
}
