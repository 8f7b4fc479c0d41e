//! Splitting long text into parts the platform accepts (protocols.md §5.1: overflow is 45002).

use core::ops::Range;

/// The default byte budget of one text part: below the ~2,048 bytes reported for the platform.
pub const DEFAULT_TEXT_BUDGET: usize = 2000;

/// Splits `text` into ordered parts of at most `budget` bytes of UTF-8 whose concatenation is
/// `text`.
///
/// * A cut never falls inside a character, nor inside an `<a …>…</a>` element (or, when it is
///   not closed, inside its `<a …>` tag), so that links stay whole. A part is longer than the
///   budget only when it is one such element, or one character, that alone exceeds it.
/// * Within the budget, a cut prefers to follow a line break, then a space, when one lies in the
///   second half of the part, so that words and lines stay whole where they can.
/// * Text within the budget comes back as one part; empty text as no part.
///
/// ```
/// use kefu_payload::cgibin::split_text;
/// assert_eq!(split_text("你好世界", 6), ["你好", "世界"]);
/// let parts = split_text(r#"看<a href="https://a.b/">这里</a>吧"#, 8);
/// assert_eq!(parts, ["看", r#"<a href="https://a.b/">这里</a>"#, "吧"]);
/// ```
pub fn split_text(text: &str, budget: usize) -> Vec<&str> {
    let budget = budget.max(1);
    let links = links(text);
    let inside_link = |at: usize| link_around(&links, at);
    let mut parts = Vec::new();
    let mut start = 0;
    while text.len() - start > budget {
        let mut end = floor_char_boundary(text, start + budget);
        if let Some(link) = inside_link(end) {
            end = link.start;
        }
        if end <= start {
            // One link or one character alone exceeds the budget: it becomes its own part.
            end = match link_around(&links, start + 1).filter(|r| r.start == start) {
                Some(link) => link.end,
                None => ceil_char_boundary(text, start + 1),
            };
        } else {
            end = nicer_cut(text, start, end, &inside_link);
        }
        parts.push(&text[start..end]);
        start = end;
    }
    if start < text.len() {
        parts.push(&text[start..]);
    }
    parts
}

/// A cut just after the last line break, or else the last space, in the second half of
/// `start..end`, outside links; `end` when there is none.
fn nicer_cut<'a>(
    text: &str,
    start: usize,
    end: usize,
    inside_link: &impl Fn(usize) -> Option<&'a Range<usize>>,
) -> usize {
    let half = start + (end - start) / 2;
    let window = &text[start..end];
    for separator in ['\n', ' '] {
        let found = window
            .char_indices()
            .rev()
            .map(|(i, c)| (start + i + c.len_utf8(), c))
            .take_while(|&(cut, _)| cut > half)
            .find(|&(cut, c)| c == separator && cut < end && inside_link(cut).is_none());
        if let Some((cut, _)) = found {
            return cut;
        }
    }
    end
}

/// The link that `at` falls strictly inside, by binary search: `links` is sorted and without
/// overlap, so a cut costs O(log n) rather than a walk over every link.
fn link_around(links: &[Range<usize>], at: usize) -> Option<&Range<usize>> {
    let index = links.partition_point(|r| r.end <= at);
    links.get(index).filter(|r| r.start < at)
}

/// The byte ranges of `<a …>…</a>` elements (ASCII case-insensitive), or of a lone `<a …>` tag
/// when no `</a>` follows it, in order and without overlap.
///
/// One pass: each byte is scanned a bounded number of times. Once a search for `</a>` has run to
/// the end in vain, no later `<a` can be closed either, so it is not searched again; rescanning
/// for every unclosed `<a` made `"<a>"` repeated over 64 KB take seconds (quadratic).
fn links(text: &str) -> Vec<Range<usize>> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut at = 0;
    let mut closes_ahead = true;
    while let Some(offset) = find_open(&bytes[at..]) {
        let open = at + offset;
        let after_open = open + 2;
        let close = if closes_ahead {
            find_ascii_ci(&bytes[after_open..], b"</a>")
        } else {
            None
        };
        let end = match close {
            Some(close) => after_open + close + 4,
            None => {
                closes_ahead = false;
                match bytes[after_open..].iter().position(|&b| b == b'>') {
                    Some(gt) => after_open + gt + 1,
                    // No `>` after this `<a`, hence none after any later one.
                    None => break,
                }
            }
        };
        found.push(open..end);
        at = end;
    }
    found
}

/// The offset of the next `<a` followed by whitespace or `>`.
fn find_open(bytes: &[u8]) -> Option<usize> {
    bytes.windows(3).position(|w| {
        w[0] == b'<'
            && w[1].eq_ignore_ascii_case(&b'a')
            && (w[2].is_ascii_whitespace() || w[2] == b'>')
    })
}

fn find_ascii_ci(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w.eq_ignore_ascii_case(needle))
}

fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_char_boundary(text: &str, mut at: usize) -> usize {
    at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn examples() {
        assert!(split_text("", 10).is_empty());
        assert_eq!(split_text("short", 10), ["short"]);
        assert_eq!(split_text("abcdef", 3), ["abc", "def"]);
        assert_eq!(split_text("ab cd ef", 6), ["ab cd ", "ef"]);
        assert_eq!(
            split_text("line one\nline two", 12),
            ["line one\n", "line two"]
        );
        // A 4-byte emoji never splits, even with a budget below its size.
        assert_eq!(split_text("😀😀", 3), ["😀", "😀"]);
        // A link longer than the budget stays whole, in its own part.
        let link = r#"<a href="https://example.com/very/long">点这里</a>"#;
        assert_eq!(split_text(&format!("ab{link}cd"), 10), ["ab", link, "cd"]);
        // Case-insensitive tags, and an unclosed tag is kept whole.
        assert_eq!(
            split_text("x<A HREF='u'>y</A>", 5),
            ["x", "<A HREF='u'>y</A>"]
        );
        assert_eq!(
            split_text("x<a href='long'>yz", 5),
            ["x", "<a href='long'>", "yz"]
        );
        // `<abbr>` is not a link.
        assert_eq!(split_text("<abbr>", 3), ["<ab", "br>"]);
    }

    /// Inputs that made the former splitter quadratic: every `<a` unclosed, or every link
    /// found by walking all links before it. A quadratic splitter would not finish these 1 MB
    /// inputs within the test run (hours in a debug build); a linear one takes milliseconds.
    #[test]
    fn adversarial_megabyte_inputs_split_in_one_pass() {
        let megabyte = 1 << 20;
        for unit in ["<a>", "<a ", "<a>x</a>", "<a", "a<a>b "] {
            let text = unit.repeat(megabyte / unit.len());
            let parts = split_text(&text, DEFAULT_TEXT_BUDGET);
            assert_eq!(parts.concat(), text, "{unit}");
            let parts = split_text(&text, 1);
            assert_eq!(parts.concat(), text, "{unit}");
        }
    }

    #[test]
    fn link_around_finds_the_enclosing_link() {
        let links = [2..5, 7..9];
        assert_eq!(link_around(&links, 2), None);
        assert_eq!(link_around(&links, 3), Some(&(2..5)));
        assert_eq!(link_around(&links, 5), None);
        assert_eq!(link_around(&links, 8), Some(&(7..9)));
        assert_eq!(link_around(&links, 9), None);
        assert_eq!(link_around(&[], 1), None);
    }

    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("<a href=\"https://a.b/?x=1&y=2\">链接</a>".to_owned()),
            Just("<a data-miniprogram-appid=\"wx1\" href=\"h\">小程序</a>".to_owned()),
            Just("<a href='u'>".to_owned()),
            Just("</a>".to_owned()),
            Just("<".to_owned()),
            Just("\n".to_owned()),
            Just(" ".to_owned()),
            Just("😀".to_owned()),
            "[a-z]{1,6}",
            "[一-龥]{1,4}",
        ]
    }

    proptest! {
        #[test]
        fn parts_fit_and_concatenate_to_the_input(
            pieces in proptest::collection::vec(piece(), 0..40),
            budget in 1usize..80,
        ) {
            let text: String = pieces.concat();
            let parts = split_text(&text, budget);
            prop_assert_eq!(parts.concat(), text.clone());
            let links = links(&text);
            let mut at = 0;
            for part in &parts {
                prop_assert!(!part.is_empty());
                let range = at..at + part.len();
                if part.len() > budget {
                    let one_char = part.chars().count() == 1;
                    prop_assert!(one_char || links.contains(&range), "{:?} over {}", part, budget);
                }
                // No cut inside a link.
                prop_assert!(links.iter().all(|l| !(l.start < range.end && range.end < l.end)));
                at = range.end;
            }
        }
    }
}
