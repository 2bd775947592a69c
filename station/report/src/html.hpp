// station/report/src/html.hpp — internal: the page skeleton, tables and the
// SVG plot writer shared by the lot report and the unit page.
//
// Plot maps data coordinates to a fixed pixel box with "nice" ticks (1, 2, 5
// × 10^k) and writes inline SVG (no script, no external reference). Every
// text goes through html_escape; every number through num(). Non-finite data
// points are skipped; an empty plot says "no data".
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "eol/station/report.hpp"

namespace eol::station::report_detail {

/// A number for people: up to `digits` significant digits; "–" for NaN.
std::string num(double v, int digits = 4);
std::string utc(double unix_s);

/// <html>…<body> with the report's CSS, and the closing part.
std::string page_head(std::string_view title);
std::string page_foot(std::string_view generated_by, double generated_unix_s);

/// An HTML table of a ReportTable (text escaped); `row_class` may name a CSS
/// class per row (empty = none).
std::string html_table(const ReportTable& t, const std::vector<std::string>& row_class = {}, std::size_t max_rows = 0);

struct Range {
    double lo = 0.0, hi = 1.0;
    void include(double v);
    bool empty() const { return !(hi > lo); }
    void pad(double fraction);  // widen by a fraction of the span (or ±1 when flat)
    bool seen = false;
};

class Plot {
public:
    Plot(std::string title, std::string x_label, std::string y_label, Range x, Range y, int width_px = 560,
         int height_px = 300);
    double px(double x) const;
    double py(double y) const;
    bool in_x(double x) const { return x >= x_.lo && x <= x_.hi; }
    bool in_y(double y) const { return y >= y_.lo && y <= y_.hi; }

    void bar(double x0, double x1, double y, std::string_view css);
    void polyline(const std::vector<double>& xs, const std::vector<double>& ys, std::string_view css);
    void point(double x, double y, double r_px, std::string_view css, std::string_view tooltip = {});
    void ring(double x, double y, double r_px, std::string_view css, std::string_view tooltip = {});
    void vline(double x, std::string_view css, std::string_view label);
    void hline(double y, std::string_view css, std::string_view label);
    /// A legend entry (swatch class + text), drawn top right.
    void legend(std::string_view css, std::string_view text);
    /// X tick labels from a function (e.g. dates); default: numbers.
    void x_tick_text(std::string (*f)(double)) { x_text_ = f; }
    std::string svg() const;

private:
    std::string title_, x_label_, y_label_;
    Range x_, y_;
    int w_, h_;
    double left_ = 64, right_ = 16, top_ = 28, bottom_ = 44;
    std::string body_;
    std::vector<std::pair<std::string, std::string>> legend_;
    std::string (*x_text_)(double) = nullptr;
};

/// "Not plotted: why" as a small SVG of the same size (keeps the grid).
std::string empty_svg(std::string_view title, std::string_view why, int width_px = 560, int height_px = 300);

}  // namespace eol::station::report_detail
