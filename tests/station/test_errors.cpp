// Edit distance and did-you-mean, used for unknown configuration keys.
#include <doctest/doctest.h>

#include "eol/station/errors.hpp"

using eol::station::did_you_mean;
using eol::station::edit_distance;

TEST_CASE("edit distance counts insertions, deletions, substitutions and neighbour swaps") {
    CHECK(edit_distance("", "") == 0);
    CHECK(edit_distance("abc", "") == 3);
    CHECK(edit_distance("timout_s", "timeout_s") == 1);
    CHECK(edit_distance("heet", "heat") == 1);
    CHECK(edit_distance("haet", "heat") == 1);
    CHECK(edit_distance("kitten", "sitting") == 3);
}

TEST_CASE("did_you_mean suggests only close candidates") {
    const std::vector<std::string> keys{"timeout_s", "channels", "address", "heat"};
    CHECK(did_you_mean("timout_s", keys) == "timeout_s");
    CHECK(did_you_mean("haet", keys) == "heat");
    CHECK(did_you_mean("adress", keys) == "address");
    CHECK(did_you_mean("banana", keys).empty());
}
