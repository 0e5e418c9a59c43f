//! Reservation patterns: project-relative paths and globs, and whether two of them overlap.
//!
//! Syntax is gitignore's for globs (`*` and `?` within one segment, `**` as a whole segment
//! for any number of segments, `[…]` classes with ranges and `!`/`^` negation), with two
//! differences that suit reservations: every pattern is anchored at the project root (a
//! pattern without `/` does not match at every depth), and a pattern also covers everything
//! below what it matches (`src` and `src/` both reserve the whole directory). A `scheme:name`
//! pattern (`port:3000`) is a virtual resource: it matches itself only.
//!
//! Overlap is exact: two patterns overlap when some path is covered by both. Each pattern is
//! a sequence of segments; segments are compared as finite automata (the product of the two
//! is searched), and segment sequences the same way with `**` absorbing segments.

use std::fmt;

/// A parsed, normalised pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// `scheme:name`, compared as text.
    Virtual(Box<str>),
    Path(Vec<Segment>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// `**`: any number of segments, none included.
    AnyDepth,
    Glob(Vec<Token>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    Char(char),
    /// `?`
    One,
    /// `*`
    Star,
    /// `[…]`: inclusive ranges; `negated` for `[!…]` or `[^…]`.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// Why a path cannot be reserved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    Empty,
    /// A `..` segment: the path would leave the project.
    EscapesProject,
    /// A `[` without its `]`.
    UnclosedClass,
    /// `[:upper:]` and friends are not supported.
    PosixClass,
    /// A `scheme:name`-shaped path written with a `/` (`a:b/`): ambiguous.
    LooksVirtual,
    /// Past a bound on a pattern's size or wildcards (see the constants).
    TooComplex(&'static str),
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathError::Empty => "is empty",
            PathError::EscapesProject => "leaves the project ('..')",
            PathError::UnclosedClass => "has a '[' without its ']'",
            PathError::PosixClass => "uses a [:class:], which is not supported; use ranges",
            PathError::LooksVirtual => {
                "looks like a virtual resource (scheme:name) but has a '/'; drop the '/'"
            }
            PathError::TooComplex(what) => what,
        })
    }
}

/// Segments of one pattern: deeper is no real path.
pub const MAX_SEGMENTS: usize = 64;
/// Bytes of one segment: what file systems allow for a name.
pub const MAX_SEGMENT_BYTES: usize = 255;
/// `*`, `?` and classes in one segment, and `**` in one pattern: overlap is a search over
/// pairs of positions, so these keep one comparison to a few thousand steps.
pub const MAX_WILDCARDS_PER_SEGMENT: usize = 8;
pub const MAX_ANY_DEPTH: usize = 4;
/// States one segment comparison may visit before it answers "overlap" (conservative): the
/// bounds above keep real patterns far below it.
const MAX_OVERLAP_STEPS: usize = 1 << 16;

/// The canonical text of a path: `\` becomes `/`, leading `/` and `./` are dropped, `.` and
/// empty segments go, a trailing `/` is kept off (`dir/` and `dir` cover the same), and the
/// glob is written back in one form (`**/**` is `**`, `a**` is `a*`), so two spellings of one
/// pattern are one lease. A virtual resource is kept as given. Escapes are not supported
/// (`\` is a separator).
pub fn normalize(path: &str) -> Result<String, PathError> {
    if is_virtual(path) {
        return Ok(path.to_string());
    }
    let path = path.replace('\\', "/");
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err(PathError::EscapesProject),
            other => segments.push(other),
        }
    }
    if segments.is_empty() {
        return Err(PathError::Empty);
    }
    let text = segments.join("/");
    if is_virtual(&text) {
        return Err(PathError::LooksVirtual);
    }
    Ok(render(&parse(&text)?))
}

/// The text of a parsed path pattern, in the one form [`parse`] reads back the same.
fn render(pattern: &Pattern) -> String {
    let Pattern::Path(segments) = pattern else {
        let Pattern::Virtual(name) = pattern else {
            unreachable!()
        };
        return name.to_string();
    };
    let mut out = String::new();
    for (index, segment) in segments.iter().enumerate() {
        if index > 0 {
            out.push('/');
        }
        match segment {
            Segment::AnyDepth => out.push_str("**"),
            Segment::Glob(tokens) => {
                for token in tokens {
                    match token {
                        Token::Char(c) => out.push(*c),
                        Token::One => out.push('?'),
                        Token::Star => out.push('*'),
                        Token::Class { negated, ranges } => {
                            out.push('[');
                            if *negated {
                                out.push('!');
                            }
                            for (lo, hi) in ranges {
                                out.push(*lo);
                                if lo != hi {
                                    out.push('-');
                                    out.push(*hi);
                                }
                            }
                            out.push(']');
                        }
                    }
                }
            }
        }
    }
    out
}

/// `scheme:name`: a scheme of ASCII letters, digits, `+`, `.` or `-` starting with a letter,
/// and no `/` or `\` anywhere.
fn is_virtual(path: &str) -> bool {
    let Some((scheme, _)) = path.split_once(':') else {
        return false;
    };
    !path.contains(['/', '\\'])
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
}

/// Parses a normalised path (see [`normalize`]).
pub fn parse(text: &str) -> Result<Pattern, PathError> {
    if is_virtual(text) {
        return Ok(Pattern::Virtual(text.into()));
    }
    let mut segments = Vec::new();
    let mut any_depth = 0;
    for segment in text.split('/').filter(|s| !s.is_empty()) {
        if segments.len() >= MAX_SEGMENTS {
            return Err(PathError::TooComplex("has more than 64 segments"));
        }
        if segment.len() > MAX_SEGMENT_BYTES {
            return Err(PathError::TooComplex("has a segment longer than 255 bytes"));
        }
        if segment == "**" {
            any_depth += 1;
            if any_depth > MAX_ANY_DEPTH {
                return Err(PathError::TooComplex("has more than 4 '**'"));
            }
            // `a/**/**/b` is `a/**/b`.
            if segments.last() != Some(&Segment::AnyDepth) {
                segments.push(Segment::AnyDepth);
            }
            continue;
        }
        let tokens = tokens(segment)?;
        let wildcards = tokens
            .iter()
            .filter(|t| !matches!(t, Token::Char(_)))
            .count();
        if wildcards > MAX_WILDCARDS_PER_SEGMENT {
            return Err(PathError::TooComplex(
                "has more than 8 wildcards ('*', '?', '[…]') in one segment",
            ));
        }
        segments.push(Segment::Glob(tokens));
    }
    if segments.is_empty() {
        return Err(PathError::Empty);
    }
    Ok(Pattern::Path(segments))
}

fn tokens(segment: &str) -> Result<Vec<Token>, PathError> {
    let mut out = Vec::new();
    let mut chars = segment.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' => {
                // `**` inside a segment is `*`.
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                out.push(Token::Star);
            }
            '?' => out.push(Token::One),
            '[' => {
                let negated = matches!(chars.peek(), Some('!' | '^'));
                if negated {
                    chars.next();
                }
                let mut ranges = Vec::new();
                let mut first = true;
                loop {
                    let Some(start) = chars.next() else {
                        return Err(PathError::UnclosedClass);
                    };
                    // A `]` first in the class is a member, as in gitignore.
                    if start == ']' && !first {
                        break;
                    }
                    if start == '[' && chars.peek() == Some(&':') {
                        return Err(PathError::PosixClass);
                    }
                    first = false;
                    let mut end = start;
                    if chars.peek() == Some(&'-') {
                        let mut ahead = chars.clone();
                        ahead.next();
                        if let Some(&to) = ahead.peek() {
                            if to != ']' {
                                chars.next();
                                chars.next();
                                end = to;
                            }
                        }
                    }
                    if start <= end {
                        ranges.push((start, end));
                    }
                }
                out.push(Token::Class { negated, ranges });
            }
            '\\' => out.push(Token::Char(chars.next().unwrap_or('\\'))),
            c => out.push(Token::Char(c)),
        }
    }
    Ok(out)
}

/// Whether some path is covered by both patterns.
pub fn overlap(a: &Pattern, b: &Pattern) -> bool {
    match (a, b) {
        (Pattern::Virtual(x), Pattern::Virtual(y)) => x == y,
        (Pattern::Path(x), Pattern::Path(y)) => sequences_overlap(x, y),
        _ => false,
    }
}

/// Whether `path` (a concrete path, no globs) is covered by `pattern`.
pub fn covers(pattern: &Pattern, path: &str) -> bool {
    match pattern {
        Pattern::Virtual(name) => **name == *path,
        Pattern::Path(segments) => {
            let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
            covers_from(segments, &parts)
        }
    }
}

/// A pattern covers a path when it matches the path or one of its ancestors.
fn covers_from(segments: &[Segment], parts: &[&str]) -> bool {
    match segments.split_first() {
        None => true,
        Some((Segment::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| covers_from(rest, &parts[skip..]))
        }
        Some((Segment::Glob(tokens), rest)) => match parts.split_first() {
            Some((part, tail)) => {
                let chars: Vec<char> = part.chars().collect();
                glob_matches(tokens, &chars) && covers_from(rest, tail)
            }
            None => false,
        },
    }
}

fn glob_matches(tokens: &[Token], text: &[char]) -> bool {
    match tokens.split_first() {
        None => text.is_empty(),
        Some((Token::Star, rest)) => (0..=text.len()).any(|skip| glob_matches(rest, &text[skip..])),
        Some((token, rest)) => match text.split_first() {
            Some((c, tail)) => token_accepts(token, *c) && glob_matches(rest, tail),
            None => false,
        },
    }
}

fn token_accepts(token: &Token, c: char) -> bool {
    match token {
        Token::Char(x) => *x == c,
        Token::One | Token::Star => c != '/',
        Token::Class { negated, ranges } => {
            c != '/' && ranges.iter().any(|(lo, hi)| *lo <= c && c <= *hi) != *negated
        }
    }
}

/// Segment sequences: covering means a trailing `**`, so both get one; then the product of
/// the two sequences is searched, `**` absorbing whole segments of the other side.
fn sequences_overlap(a: &[Segment], b: &[Segment]) -> bool {
    let a: Vec<&Segment> = a
        .iter()
        .chain(std::iter::once(&Segment::AnyDepth))
        .collect();
    let b: Vec<&Segment> = b
        .iter()
        .chain(std::iter::once(&Segment::AnyDepth))
        .collect();
    let (n, m) = (a.len(), b.len());
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut stack = vec![(0usize, 0usize)];
    while let Some((i, j)) = stack.pop() {
        if seen[i * (m + 1) + j] {
            continue;
        }
        seen[i * (m + 1) + j] = true;
        if i == n && j == m {
            return true;
        }
        let mut next = |i: usize, j: usize| {
            if i <= n && j <= m && !seen[i * (m + 1) + j] {
                stack.push((i, j));
            }
        };
        match (a.get(i), b.get(j)) {
            (Some(Segment::AnyDepth), other) => {
                next(i + 1, j);
                if other.is_some() {
                    next(i, j + 1);
                }
                if matches!(other, Some(Segment::AnyDepth)) {
                    next(i + 1, j + 1);
                }
            }
            (other, Some(Segment::AnyDepth)) => {
                next(i, j + 1);
                if other.is_some() {
                    next(i + 1, j);
                }
            }
            (Some(Segment::Glob(x)), Some(Segment::Glob(y))) if globs_overlap(x, y) => {
                next(i + 1, j + 1);
            }
            _ => {}
        }
    }
    false
}

/// Whether some segment text (no `/`) matches both globs: the product automaton of the two
/// is searched from (0, 0) to (end, end).
fn globs_overlap(x: &[Token], y: &[Token]) -> bool {
    let (n, m) = (x.len(), y.len());
    let mut seen = vec![false; (n + 1) * (m + 1)];
    let mut stack = vec![(0usize, 0usize)];
    let mut steps = 0usize;
    while let Some((i, j)) = stack.pop() {
        if seen[i * (m + 1) + j] {
            continue;
        }
        seen[i * (m + 1) + j] = true;
        steps += 1;
        if steps > MAX_OVERLAP_STEPS {
            // Past the budget: report an overlap, which is the safe answer.
            return true;
        }
        if i == n && j == m {
            return true;
        }
        let (tx, ty) = (x.get(i), y.get(j));
        // A star may match nothing.
        if tx == Some(&Token::Star) {
            stack.push((i + 1, j));
        }
        if ty == Some(&Token::Star) {
            stack.push((i, j + 1));
        }
        // Or both sides take one common character.
        if let (Some(tx), Some(ty)) = (tx, ty) {
            if chars_intersect(tx, ty) {
                let ni = if *tx == Token::Star { i } else { i + 1 };
                let nj = if *ty == Token::Star { j } else { j + 1 };
                stack.push((ni, nj));
            }
        }
    }
    false
}

/// Whether one character (not `/`) is accepted by both tokens, without allocating.
fn chars_intersect(a: &Token, b: &Token) -> bool {
    match (a, b) {
        (Token::One | Token::Star, Token::One | Token::Star) => true,
        (Token::One | Token::Star, other) | (other, Token::One | Token::Star) => {
            accepts_some(other)
        }
        (Token::Char(x), Token::Char(y)) => x == y,
        (Token::Char(c), class) | (class, Token::Char(c)) => token_accepts(class, *c),
        (
            Token::Class {
                negated: na,
                ranges: ra,
            },
            Token::Class {
                negated: nb,
                ranges: rb,
            },
        ) => match (na, nb) {
            // Two complements of finite sets always share a character.
            (true, true) => true,
            (false, false) => ra.iter().any(|&(lo, hi)| {
                rb.iter().any(|&(lo2, hi2)| {
                    let (from, to) = (lo.max(lo2), hi.min(hi2));
                    from <= to && !(from == '/' && to == '/')
                })
            }),
            (false, true) => has_outside(ra, rb),
            (true, false) => has_outside(rb, ra),
        },
    }
}

/// Whether a token accepts any character at all (other than `/`).
fn accepts_some(token: &Token) -> bool {
    match token {
        Token::Char(c) => *c != '/',
        Token::One | Token::Star => true,
        Token::Class { negated: true, .. } => true,
        Token::Class { ranges, .. } => has_outside(ranges, &[]),
    }
}

/// Whether some character of `ranges` lies outside every range of `excluded` (and is not
/// `/`), without allocating: each range's start is pushed past the exclusions covering it.
fn has_outside(ranges: &[(char, char)], excluded: &[(char, char)]) -> bool {
    ranges.iter().any(|&(lo, hi)| {
        let mut next = lo as u32;
        // Exclusions in any order: repeat until no exclusion moves `next` (at most one pass
        // per exclusion).
        for _ in 0..=excluded.len() {
            let mut moved = false;
            for &(clo, chi) in excluded.iter().chain(std::iter::once(&('/', '/'))) {
                if (clo as u32) <= next && next <= chi as u32 {
                    next = chi as u32 + 1;
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        next <= hi as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Pattern {
        parse(&normalize(text).expect("valid")).expect("parses")
    }

    /// The overlap table: (a, b, expected). Its size is reported in the note.
    pub const TABLE: &[(&str, &str, bool)] = &[
        // literal / literal
        ("src/main.rs", "src/main.rs", true),
        ("src/main.rs", "src/lib.rs", false),
        ("README.md", "docs/README.md", false),
        // ancestor directories and dir/
        ("src", "src/main.rs", true),
        ("src/", "src/a/b/c.rs", true),
        ("src/", "srcs/a.rs", false),
        ("docs/", "src/", false),
        ("a/b", "a", true),
        // literal / glob
        ("src/*.rs", "src/main.rs", true),
        ("src/*.rs", "src/a/main.rs", false),
        ("src/*", "src/a/main.rs", true),
        ("src/*.rs", "src/main.ts", false),
        ("*.md", "README.md", true),
        ("*.md", "docs/README.md", false),
        ("src/?.rs", "src/a.rs", true),
        ("src/?.rs", "src/ab.rs", false),
        // **
        ("**/*.md", "docs/a/README.md", true),
        ("**/*.md", "README.md", true),
        ("src/**", "src", true),
        ("src/**/test.rs", "src/test.rs", true),
        ("src/**/test.rs", "lib/test.rs", false),
        ("**", "anything/at/all", true),
        // glob / glob
        ("src/*.rs", "src/m*", true),
        ("src/*.rs", "src/*.ts", false),
        ("*.rs", "*.ts", false),
        ("a*b", "*c", false),
        ("a*b", "*b", true),
        ("*/x", "y/*", true),
        ("src/**/*.rs", "src/*/mod.rs", true),
        ("src/**/*.rs", "lib/**", false),
        // character classes
        ("src/[ab].rs", "src/a.rs", true),
        ("src/[ab].rs", "src/c.rs", false),
        ("src/[a-c].rs", "src/[c-e].rs", true),
        ("src/[a-b].rs", "src/[c-e].rs", false),
        ("src/[!a].rs", "src/a.rs", false),
        ("src/[!a].rs", "src/[ab].rs", true),
        ("src/[!ab].rs", "src/[ab].rs", false),
        ("src/[!a].rs", "src/[!b].rs", true),
        // virtual resources
        ("port:3000", "port:3000", true),
        ("port:3000", "port:3001", false),
        ("port:3000", "**", false),
        ("slot:frontend-build", "slot:frontend-build", true),
        // normalisation
        ("./src\\main.rs", "/src/main.rs", true),
        ("src//./main.rs", "src/main.rs", true),
    ];

    #[test]
    fn the_overlap_table() {
        for (a, b, expected) in TABLE {
            assert_eq!(overlap(&p(a), &p(b)), *expected, "{a} ~ {b}");
            assert_eq!(overlap(&p(b), &p(a)), *expected, "{b} ~ {a} (symmetric)");
        }
    }

    #[test]
    fn normalisation_and_errors() {
        assert_eq!(normalize("./src\\a.rs").as_deref(), Ok("src/a.rs"));
        assert_eq!(normalize("/src/").as_deref(), Ok("src"));
        assert_eq!(normalize("port:3000").as_deref(), Ok("port:3000"));
        assert_eq!(normalize("../etc/passwd"), Err(PathError::EscapesProject));
        assert_eq!(normalize("a/../../b"), Err(PathError::EscapesProject));
        assert_eq!(normalize("./"), Err(PathError::Empty));
        assert_eq!(normalize("src/[ab"), Err(PathError::UnclosedClass));
        assert!(
            matches!(p("a:b/c"), Pattern::Path(_)),
            "a slash makes it a path"
        );
    }

    /// A small deterministic generator (no new package).
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    fn random_pattern(rng: &mut Rng) -> String {
        const TOKENS: [&str; 8] = ["a", "b", "*", "?", "[ab]", "[!a]", "a*", "[a-b]"];
        let segments = 1 + rng.below(3);
        (0..segments)
            .map(|_| {
                if rng.below(5) == 0 {
                    return "**".to_string();
                }
                (0..1 + rng.below(2))
                    .map(|_| TOKENS[rng.below(TOKENS.len())])
                    .collect()
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    fn random_path(rng: &mut Rng) -> String {
        let segments = 1 + rng.below(4);
        (0..segments)
            .map(|_| {
                (0..1 + rng.below(3))
                    .map(|_| ["a", "b", "c"][rng.below(3)])
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    #[test]
    fn whenever_a_path_is_covered_by_both_overlap_is_reported() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut witnessed = 0;
        for _ in 0..3000 {
            let (a, b) = (p(&random_pattern(&mut rng)), p(&random_pattern(&mut rng)));
            let reported = overlap(&a, &b);
            assert_eq!(reported, overlap(&b, &a), "{a:?} ~ {b:?} symmetric");
            for _ in 0..40 {
                let path = random_path(&mut rng);
                if covers(&a, &path) && covers(&b, &path) {
                    witnessed += 1;
                    assert!(reported, "{path} is covered by {a:?} and {b:?}");
                }
            }
        }
        assert!(
            witnessed > 1000,
            "the generator finds shared paths ({witnessed})"
        );
    }
}
