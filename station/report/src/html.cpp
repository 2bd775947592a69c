// The page skeleton, tables, CSV and the SVG plot writer (html.hpp).
#include "html.hpp"
#include "eol/station/text.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <ctime>

namespace eol::station {

std::string html_escape(std::string_view text) {
    std::string out;
    out.reserve(text.size() + 16);
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c < 0x80) {
            switch (c) {
                case '&': out += "&amp;"; break;
                case '<': out += "&lt;"; break;
                case '>': out += "&gt;"; break;
                case '"': out += "&quot;"; break;
                case '\'': out += "&#39;"; break;
                case '\t': out += ' '; break;
                default:
                    if (c < 0x20 || c == 0x7f) out += "\xEF\xBF\xBD";  // U+FFFD for control characters
                    else out += static_cast<char>(c);
            }
            ++i;
            continue;
        }
        // A valid UTF-8 sequence is kept; an invalid byte becomes U+FFFD.
        std::size_t n = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 && c <= 0xDF ? 2 : 0;
        bool ok = n > 0 && i + n <= text.size() && c < 0xF5;
        for (std::size_t k = 1; ok && k < n; ++k) ok = (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
        if (ok && n == 3) {
            const auto c1 = static_cast<unsigned char>(text[i + 1]);
            ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
        }
        if (ok && n == 4) {
            const auto c1 = static_cast<unsigned char>(text[i + 1]);
            ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90);
        }
        if (ok) {
            out.append(text.substr(i, n));
            i += n;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

namespace {
bool is_number(std::string_view s) {
    double v = 0;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size();
}
}  // namespace

std::string to_csv(const ReportTable& t) {
    auto field = [](std::string_view s) {
        std::string f(s);
        if (!f.empty() && (f[0] == '=' || f[0] == '+' || f[0] == '-' || f[0] == '@') && !is_number(f))
            f.insert(f.begin(), '\'');
        if (f.find_first_of(",\"\n\r") == std::string::npos) return f;
        std::string q = "\"";
        for (char c : f) {
            if (c == '"') q += '"';
            q += c;
        }
        return q + "\"";
    };
    std::string out;
    for (std::size_t j = 0; j < t.columns.size(); ++j) out += (j ? "," : "") + field(t.columns[j]);
    out += '\n';
    for (const auto& row : t.rows) {
        for (std::size_t j = 0; j < row.size(); ++j) out += (j ? "," : "") + field(row[j]);
        out += '\n';
    }
    return out;
}

namespace report_detail {

std::string num(double v, int digits) {
    if (!std::isfinite(v)) return std::isnan(v) ? "–" : (v > 0 ? "∞" : "−∞");
    if (v == 0.0) return "0";
    return fmt::format("{:.{}g}", v, digits);
}

std::string utc(double unix_s) {
    if (!std::isfinite(unix_s) || unix_s <= 0) return "–";
    return utc_text(unix_s, "%Y-%m-%d %H:%M:%S UTC");
}

std::string page_head(std::string_view title) {
    return fmt::format(R"(<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{}</title>
<style>
body {{ font-family: "DejaVu Sans", Arial, sans-serif; margin: 24px; color: #1d2329; background: #fff; font-size: 14px; }}
h1 {{ font-size: 22px; margin: 0 0 4px 0; }} h2 {{ font-size: 17px; margin: 28px 0 8px 0; border-bottom: 1px solid #ccd; padding-bottom: 3px; }}
.sub {{ color: #555; margin-bottom: 14px; }}
table {{ border-collapse: collapse; margin: 6px 0 10px 0; }}
th, td {{ border: 1px solid #d4d8de; padding: 3px 8px; text-align: left; vertical-align: top; }}
th {{ background: #eef1f5; }} td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.bad td {{ background: #fde8e8; }} tr.warn td {{ background: #fff4d6; }} tr.good td {{ background: #e8f6ea; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 10px; margin: 10px 0; }}
.card {{ border: 1px solid #d4d8de; border-radius: 6px; padding: 8px 14px; min-width: 90px; }}
.card b {{ display: block; font-size: 22px; }} .card.bad {{ border-color: #c62828; color: #8e1b1b; }} .card.good {{ border-color: #2e7d32; color: #1b5e20; }}
.verdict {{ font-size: 18px; font-weight: bold; padding: 8px 12px; border-radius: 6px; display: inline-block; margin: 6px 0; }}
.verdict.bad {{ background: #c62828; color: #fff; }} .verdict.warn {{ background: #f9a825; color: #000; }} .verdict.good {{ background: #2e7d32; color: #fff; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 12px; }}
svg {{ background: #fff; border: 1px solid #e0e3e8; }}
svg text {{ font-family: "DejaVu Sans", Arial, sans-serif; font-size: 11px; fill: #333; }}
svg .title {{ font-size: 13px; font-weight: bold; }}
svg .axis {{ stroke: #555; stroke-width: 1; }} svg .grid {{ stroke: #e6e8ec; stroke-width: 1; }}
svg .bar {{ fill: #7fa7d9; stroke: #4d78ad; stroke-width: 0.5; }} svg .bar.held {{ fill: #e57373; stroke: #b71c1c; }}
svg .spec {{ stroke: #c62828; stroke-width: 2; }} svg .pat {{ stroke: #ef6c00; stroke-width: 1.5; stroke-dasharray: 6 3; }}
svg .center {{ stroke: #2e7d32; stroke-width: 1.5; }} svg .sigma {{ stroke: #c62828; stroke-width: 1; stroke-dasharray: 4 3; }}
svg .pt {{ fill: #4d78ad; fill-opacity: 0.6; }} svg .pt.held {{ fill: #c62828; fill-opacity: 0.9; }} svg .pt.hit {{ fill: #c62828; fill-opacity: 1; }}
svg .ring {{ fill: none; stroke: #6a1b9a; stroke-width: 1.5; }}
svg .data {{ fill: none; stroke: #4d78ad; stroke-width: 1.5; }} svg .model {{ fill: none; stroke: #c62828; stroke-width: 1.5; stroke-dasharray: 5 3; }}
svg .line {{ fill: none; stroke: #555; stroke-width: 1; }}
svg .gauge {{ fill: #e8f6ea; stroke: #2e7d32; }} svg .mark {{ fill: #1d2329; }} svg .mark.bad {{ fill: #c62828; }}
.note {{ color: #555; font-size: 12px; }} footer {{ margin-top: 30px; color: #777; font-size: 12px; }}
code {{ background: #f2f4f7; padding: 0 3px; }}
</style></head><body>
)",
                       html_escape(title));
}

std::string page_foot(std::string_view generated_by, double generated_unix_s) {
    return fmt::format("<footer>Generated {} by {} — one self-contained file: no scripts, no external assets.</footer>\n"
                       "</body></html>\n",
                       html_escape(utc(generated_unix_s)), html_escape(generated_by.empty() ? "eolstation" : generated_by));
}

std::string html_table(const ReportTable& t, const std::vector<std::string>& row_class, std::size_t max_rows) {
    std::string out = "<table><thead><tr>";
    for (const auto& c : t.columns) out += "<th>" + html_escape(c) + "</th>";
    out += "</tr></thead><tbody>\n";
    const std::size_t n = max_rows ? std::min(max_rows, t.rows.size()) : t.rows.size();
    for (std::size_t i = 0; i < n; ++i) {
        const std::string cls = i < row_class.size() ? row_class[i] : std::string();
        out += cls.empty() ? "<tr>" : "<tr class=\"" + html_escape(cls) + "\">";
        for (const auto& f : t.rows[i]) {
            const bool numeric = !f.empty() && is_number(f);
            out += (numeric ? "<td class=\"n\">" : "<td>") + html_escape(f) + "</td>";
        }
        out += "</tr>\n";
    }
    out += "</tbody></table>\n";
    if (n < t.rows.size())
        out += fmt::format("<p class=\"note\">{} more rows in {}.csv (--csv DIR).</p>\n", t.rows.size() - n,
                           html_escape(t.name));
    return out;
}

void Range::include(double v) {
    if (!std::isfinite(v)) return;
    if (!seen) {
        lo = hi = v;
        seen = true;
        return;
    }
    lo = std::min(lo, v);
    hi = std::max(hi, v);
}

void Range::pad(double fraction) {
    if (!seen) {
        lo = 0;
        hi = 1;
        return;
    }
    const double span = hi - lo;
    if (!(span > 0)) {
        const double d = lo != 0 ? std::fabs(lo) * 0.05 : 1.0;
        lo -= d;
        hi += d;
        return;
    }
    lo -= span * fraction;
    hi += span * fraction;
}

namespace {
std::vector<double> nice_ticks(double lo, double hi, int target) {
    std::vector<double> out;
    const double span = hi - lo;
    if (!(span > 0) || !std::isfinite(span)) return out;
    const double raw = span / target;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0}) {
        step = m * mag;
        if (step >= raw) break;
    }
    const double first = std::ceil(lo / step) * step;
    for (int k = 0; k < 50; ++k) {
        const double v = first + k * step;
        if (v > hi + step * 1e-9) break;
        out.push_back(std::fabs(v) < step * 1e-9 ? 0.0 : v);
    }
    return out;
}
}  // namespace

Plot::Plot(std::string title, std::string x_label, std::string y_label, Range x, Range y, int width_px, int height_px)
    : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)), x_(x), y_(y),
      w_(width_px), h_(height_px) {
    if (!(x_.hi > x_.lo)) x_.pad(0.05);
    if (!(y_.hi > y_.lo)) y_.pad(0.05);
}

double Plot::px(double x) const { return left_ + (x - x_.lo) / (x_.hi - x_.lo) * (w_ - left_ - right_); }
double Plot::py(double y) const { return h_ - bottom_ - (y - y_.lo) / (y_.hi - y_.lo) * (h_ - top_ - bottom_); }

void Plot::bar(double x0, double x1, double y, std::string_view css) {
    if (!std::isfinite(y) || y <= y_.lo) return;
    const double a = px(std::max(x0, x_.lo)), b = px(std::min(x1, x_.hi));
    const double top = py(std::min(y, y_.hi)), base = py(std::max(0.0, y_.lo));
    body_ += fmt::format("<rect class=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"{:.1f}\"/>\n",
                         html_escape(css), a, top, std::max(0.5, b - a), std::max(0.0, base - top));
}

void Plot::polyline(const std::vector<double>& xs, const std::vector<double>& ys, std::string_view css) {
    std::string pts;
    auto flush = [&] {
        if (!pts.empty())
            body_ += fmt::format("<polyline class=\"{}\" points=\"{}\"/>\n", html_escape(css), pts);
        pts.clear();
    };
    for (std::size_t i = 0; i < std::min(xs.size(), ys.size()); ++i) {
        if (!std::isfinite(xs[i]) || !std::isfinite(ys[i])) {
            flush();
            continue;
        }
        const double yc = std::clamp(ys[i], y_.lo, y_.hi);
        pts += fmt::format("{:.1f},{:.1f} ", px(xs[i]), py(yc));
    }
    flush();
}

void Plot::point(double x, double y, double r_px, std::string_view css, std::string_view tooltip) {
    if (!std::isfinite(x) || !std::isfinite(y) || !in_x(x) || !in_y(y)) return;
    body_ += fmt::format("<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"{:.1f}\">{}</circle>\n",
                         html_escape(css), px(x), py(y), r_px,
                         tooltip.empty() ? std::string() : "<title>" + html_escape(tooltip) + "</title>");
}

void Plot::ring(double x, double y, double r_px, std::string_view css, std::string_view tooltip) {
    point(x, y, r_px, css, tooltip);
}

void Plot::vline(double x, std::string_view css, std::string_view label) {
    if (!std::isfinite(x) || !in_x(x)) return;
    const double X = px(x);
    body_ += fmt::format("<line class=\"{}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"><title>{}</title></line>\n",
                         html_escape(css), X, top_, X, h_ - bottom_, html_escape(label));
}

void Plot::hline(double y, std::string_view css, std::string_view label) {
    if (!std::isfinite(y) || !in_y(y)) return;
    const double Y = py(y);
    body_ += fmt::format("<line class=\"{}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"><title>{}</title></line>\n",
                         html_escape(css), left_, Y, w_ - right_, Y, html_escape(label));
}

void Plot::legend(std::string_view css, std::string_view text) { legend_.emplace_back(css, text); }

std::string Plot::svg() const {
    std::string s = fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\" "
        "aria-label=\"{2}\">\n<text class=\"title\" x=\"{3}\" y=\"17\">{2}</text>\n",
        w_, h_, html_escape(title_), left_);
    const double x0 = left_, x1 = w_ - right_, y0 = top_, y1 = h_ - bottom_;
    for (double t : nice_ticks(y_.lo, y_.hi, 5)) {
        const double Y = py(t);
        s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>"
                         "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n",
                         x0, Y, x1, Y, x0 - 4, Y + 4, html_escape(num(t, 4)));
    }
    for (double t : nice_ticks(x_.lo, x_.hi, 6)) {
        const double X = px(t);
        s += fmt::format("<line class=\"grid\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>"
                         "<text x=\"{:.1f}\" y=\"{:.1f}\" text-anchor=\"middle\">{}</text>\n",
                         X, y0, X, y1, X, y1 + 14, html_escape(x_text_ ? x_text_(t) : num(t, 4)));
    }
    s += fmt::format("<line class=\"axis\" x1=\"{0:.1f}\" y1=\"{2:.1f}\" x2=\"{1:.1f}\" y2=\"{2:.1f}\"/>"
                     "<line class=\"axis\" x1=\"{0:.1f}\" y1=\"{3:.1f}\" x2=\"{0:.1f}\" y2=\"{2:.1f}\"/>\n",
                     x0, x1, y1, y0);
    s += fmt::format("<text x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (x0 + x1) / 2, h_ - 8,
                     html_escape(x_label_));
    s += fmt::format("<text transform=\"translate(13 {:.1f}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                     (y0 + y1) / 2, html_escape(y_label_));
    s += body_;
    double ly = top_ + 6;
    std::size_t longest = 0;
    for (const auto& l : legend_) longest = std::max(longest, l.second.size());
    const double box_w = 30.0 + 6.3 * static_cast<double>(std::min<std::size_t>(longest, 60));
    for (const auto& [css, text] : legend_) {
        const double lx = x1 - box_w;
        s += fmt::format("<rect x=\"{:.1f}\" y=\"{:.1f}\" width=\"{:.1f}\" height=\"16\" fill=\"#fff\" fill-opacity=\"0.8\"/>",
                         lx - 4, ly - 2, box_w + 2);
        if (css.rfind("pt", 0) == 0 || css.rfind("ring", 0) == 0)
            s += fmt::format("<circle class=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"4\"/>", html_escape(css), lx + 8, ly + 6);
        else if (css.rfind("bar", 0) == 0)
            s += fmt::format("<rect class=\"{}\" x=\"{:.1f}\" y=\"{:.1f}\" width=\"16\" height=\"10\"/>", html_escape(css), lx,
                             ly + 1);
        else
            s += fmt::format("<line class=\"{}\" x1=\"{:.1f}\" y1=\"{:.1f}\" x2=\"{:.1f}\" y2=\"{:.1f}\"/>", html_escape(css),
                             lx, ly + 6, lx + 18, ly + 6);
        s += fmt::format("<text x=\"{:.1f}\" y=\"{:.1f}\">{}</text>\n", lx + 24, ly + 10, html_escape(text));
        ly += 16;
    }
    s += "</svg>\n";
    return s;
}

std::string empty_svg(std::string_view title, std::string_view why, int width_px, int height_px) {
    return fmt::format(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\" role=\"img\" "
        "aria-label=\"{2}\"><text class=\"title\" x=\"64\" y=\"17\">{2}</text>"
        "<text x=\"{3}\" y=\"{4}\" text-anchor=\"middle\">{5}</text></svg>\n",
        width_px, height_px, html_escape(title), width_px / 2, height_px / 2, html_escape(why));
}

}  // namespace report_detail
}  // namespace eol::station
