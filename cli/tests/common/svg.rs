//! Reading the charts `--plot` writes: each parses as XML with an `<svg>` root, its legend is a
//! swatch (a `rect` for bars, a `polyline` for lines) followed by a left-anchored `<text>`, and a
//! series' marks share its swatch's colour.

use std::path::Path;

/// An element's name, attributes and text, in document order.
pub struct Element {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub text: String,
}

impl Element {
    /// The attribute `name`, or "".
    pub fn attr(&self, name: &str) -> &str {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    /// A numeric attribute.
    pub fn num(&self, name: &str) -> f64 {
        self.attr(name)
            .parse()
            .unwrap_or_else(|_| panic!("<{}> has no number {name}", self.name))
    }

    /// A polyline's points.
    pub fn points(&self) -> Vec<(f64, f64)> {
        self.attr("points")
            .split_whitespace()
            .map(|p| {
                let (x, y) = p.split_once(',').expect("x,y");
                (x.parse().unwrap(), y.parse().unwrap())
            })
            .collect()
    }
}

/// A chart: its elements under the root, in document order.
pub struct Chart {
    pub elements: Vec<Element>,
}

impl Chart {
    /// Reads `path`, which must be well-formed XML whose root is an SVG `<svg>` with a size.
    pub fn read(path: &Path) -> Chart {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc = roxmltree::Document::parse(&text)
            .unwrap_or_else(|e| panic!("{} is not XML: {e}", path.display()));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        assert_eq!(
            root.tag_name().namespace(),
            Some("http://www.w3.org/2000/svg")
        );
        for size in ["width", "height"] {
            let v: u32 = root.attribute(size).unwrap().parse().unwrap();
            assert!(v > 100, "{size} {v}");
        }
        let elements = root
            .descendants()
            .filter(|n| n.is_element() && *n != root)
            .map(|n| Element {
                name: n.tag_name().name().to_string(),
                attrs: n
                    .attributes()
                    .map(|a| (a.name().to_string(), a.value().to_string()))
                    .collect(),
                text: n.text().unwrap_or("").trim().to_string(),
            })
            .collect();
        Chart { elements }
    }

    /// Every `<text>`'s content.
    pub fn texts(&self) -> Vec<&str> {
        self.named("text").map(|e| e.text.as_str()).collect()
    }

    /// The elements called `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.elements.iter().filter(move |e| e.name == name)
    }

    /// The legend: each entry's name and its swatch's colour, in order.
    pub fn legend(&self) -> Vec<(String, String)> {
        let mut entries = Vec::new();
        for (i, e) in self.elements.iter().enumerate() {
            if e.name != "text" || e.attr("text-anchor") != "start" {
                continue;
            }
            let swatch = self.elements[..i]
                .iter()
                .rev()
                .find(|s| s.name == "rect" || s.name == "polyline")
                .expect("a swatch before the legend text");
            let colour = match swatch.name.as_str() {
                "rect" => swatch.attr("fill"),
                _ => swatch.attr("stroke"),
            };
            entries.push((e.text.clone(), colour.to_string()));
        }
        entries
    }

    /// The bars of colour `fill`, without the legend's swatch (drawn first).
    pub fn bars(&self, fill: &str) -> Vec<&Element> {
        self.named("rect")
            .filter(|r| r.attr("fill") == fill)
            .skip(1)
            .collect()
    }
}
