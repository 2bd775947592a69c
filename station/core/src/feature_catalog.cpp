#include "eol/station/feature_catalog.hpp"

namespace eol::station {
namespace {

constexpr DerivedFeature kDerived[] = {
    {"k_mv_per_day", "mV/day", "self-discharge: OCV lost per day since an earlier run of the same serial"},
    {"k_log10_mv_per_day", "log10(mV/day)",
     "log10 of the K-value (floored at 0.01 mV/day): self-discharge of good cells is right-skewed, its log "
     "is near normal, as the multivariate distance assumes"},
    {"heat_rise_k_per_w", "K/W", "temperature rise of the heat step per watt of I²R heating"},
    {"thermal_rmse_k", "K", "residual of the thermal fit"},
    {"p_x_mw", "mW", "unexplained heat of the thermal fit, in mW"},
};

}  // namespace

std::span<const DerivedFeature> derived_features() { return kDerived; }

}  // namespace eol::station
