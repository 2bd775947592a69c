// tests/support/station_text.hpp — the sections test station files share
// after their instruments and channels: the safety [limits], a one-feature
// [screening] and the [sim] settings (time scale 100, seed 7, lot 0042 made
// 2023-03-14, 20 cells).
#pragma once

#include <string>

namespace eol::test {

inline std::string station_tail_toml() {
    return "[limits]\ntemp_abort_c = 60.0\nv_min_v = 2.5\ni_max_a = 10.0\n\n"
           "[screening]\nfeatures = [\"ocv_v\"]\n\n"
           "[sim]\ntime_scale = 100.0\nseed = 7\nambient_c = 25.0\nlot = \"0042\"\n"
           "production_date = 2023-03-14\ncells = 20\n";
}

}  // namespace eol::test
