//! The traffic chart: messages per minute over the last hour, as inline SVG drawn here (no
//! script, no images to fetch). Its colours come from the stylesheet.

use super::html::Html;
use shards::TRAFFIC_MINUTES;

/// Drawing units: one bar per minute, 2 wide with no gap; 40 high.
const BAR_WIDTH: u64 = 2;
const HEIGHT: u64 = 40;

/// Writes the chart of `per_minute` (oldest minute first).
pub fn traffic(html: &mut Html<'_>, per_minute: &[u32; TRAFFIC_MINUTES]) {
    let total: u64 = per_minute.iter().map(|n| u64::from(*n)).sum();
    let peak = per_minute.iter().copied().max().unwrap_or(0);
    html.raw("<svg class=\"chart\" viewBox=\"0 0 ")
        .num(BAR_WIDTH * TRAFFIC_MINUTES as u64)
        .raw(" ")
        .num(HEIGHT)
        .raw("\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"")
        .num(total)
        .raw(" messages in the last hour, at most ")
        .num(peak)
        .raw(" in one minute\"><title>")
        .num(total)
        .raw(" messages in the last hour (peak ")
        .num(peak)
        .raw(" a minute)</title><rect class=\"base\" x=\"0\" y=\"")
        .num(HEIGHT - 1)
        .raw("\" width=\"")
        .num(BAR_WIDTH * TRAFFIC_MINUTES as u64)
        .raw("\" height=\"1\"/>");
    if peak > 0 {
        for (minute, count) in per_minute.iter().enumerate() {
            if *count == 0 {
                continue;
            }
            // At least one unit high, so a quiet minute still shows.
            let height = (u64::from(*count) * HEIGHT)
                .div_ceil(u64::from(peak))
                .max(1);
            html.raw("<rect x=\"")
                .num(minute as u64 * BAR_WIDTH)
                .raw("\" y=\"")
                .num(HEIGHT - height)
                .raw("\" width=\"")
                .num(BAR_WIDTH)
                .raw("\" height=\"")
                .num(height)
                .raw("\"/>");
        }
    }
    html.raw("</svg>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_busiest_minute() {
        let mut minutes = [0u32; TRAFFIC_MINUTES];
        minutes[0] = 10;
        minutes[TRAFFIC_MINUTES - 1] = 1;
        let mut out = Vec::new();
        traffic(&mut Html::new(&mut out), &minutes);
        let svg = String::from_utf8(out).expect("utf-8");
        assert!(svg.contains("11 messages in the last hour"), "{svg}");
        assert!(
            svg.contains("<rect x=\"0\" y=\"0\" width=\"2\" height=\"40\"/>"),
            "{svg}"
        );
        assert!(
            svg.contains("<rect x=\"118\" y=\"36\" width=\"2\" height=\"4\"/>"),
            "{svg}"
        );
        assert_eq!(
            svg.matches("<rect").count(),
            3,
            "two bars and the base line"
        );
        let mut quiet = Vec::new();
        traffic(&mut Html::new(&mut quiet), &[0; TRAFFIC_MINUTES]);
        assert_eq!(
            String::from_utf8(quiet)
                .expect("utf-8")
                .matches("<rect")
                .count(),
            1
        );
    }
}
