// eol/station/feature_catalog.hpp — the names of the features screening
// derives from stored records (their meaning: features.hpp), so the
// configuration can accept them without depending on the store.
#pragma once

#include <span>
#include <string_view>

namespace eol::station {

struct DerivedFeature {
    std::string_view name;
    std::string_view unit;
    std::string_view description;
};

/// The derived features, in the order features.hpp describes them.
std::span<const DerivedFeature> derived_features();

}  // namespace eol::station
