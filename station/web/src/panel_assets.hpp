// station/web/src/panel_assets.hpp — the panel's page, script and style
// sheet (station/web/assets/), compiled into the binary by
// cmake/EmbedPanel.cmake: the panel needs no files beside eolstation (the
// chart library excepted: it is the Debian package's).
#pragma once

#include <string_view>
#include <vector>

namespace eol::station::web {

struct Asset {
    std::string_view path;          // as requested: "/index.html", "/panel.js", "/panel.css"
    std::string_view content_type;
    std::string_view body;
};

const std::vector<Asset>& panel_assets();

}  // namespace eol::station::web
