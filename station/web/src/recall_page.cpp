// The public recall lookup (recall_page.hpp): the device scheme as the page
// needs it, the answer of /api/recall, the per-client token buckets.
#include <utility>  // before Asio (Boost 1.74's awaitable.hpp needs std::exchange)

#include "eol/station/recall_page.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <nlohmann/json.hpp>

#include "eol/station/errors.hpp"

namespace eol::station::web {

using nlohmann::json;

namespace {

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

const std::string& text_of(const RecallConfig& cfg, std::string_view key) {
    const auto it = cfg.texts.find(key);
    if (it == cfg.texts.end())  // load_station_config() requires every key; a hand-made config may not
        throw UsageError(fmt::format("[recall] texts: no text '{}'", key));
    return it->second;
}

}  // namespace

std::shared_ptr<const SerialScheme> recall_device_scheme(const RecallConfig& cfg) {
    if (cfg.device_scheme.empty()) return std::make_shared<const SerialScheme>(device_serial_scheme());
    return std::make_shared<const SerialScheme>(SerialScheme::load(cfg.device_scheme));
}

std::string recall_scheme_json(const SerialScheme& scheme) {
    // The scheme's input rules are asked of normalize() itself, one
    // character at a time: a character it maps to a symbol comes back as
    // that symbol (with a wrong-length error), an ignored one as nothing, any
    // other as bad_character.
    std::string ignore;
    json aliases = json::object();
    for (int b = 0x20; b < 0x7F; ++b) {
        const char c = static_cast<char>(b);
        const NormalizeResult r = scheme.normalize(std::string(1, c));
        if (r.error && r.error->kind == SerialErrorKind::bad_character) continue;
        if (r.serial.empty()) ignore += c;
        else if (r.serial.size() == 1 && r.serial[0] != c) aliases[std::string(1, c)] = r.serial;
    }
    // Confusable pairs: a serial with symbol b first is valid; with a in its
    // place the check fails, and normalize() proposes the b serial exactly
    // when {a, b} is a confusable pair (a swap at position 1 is the only way
    // to get b there).
    json confusable = json::array();
    const std::string& abc = scheme.alphabet();
    if (scheme.has_check() && scheme.length() >= 2) {
        for (std::size_t i = 0; i < abc.size(); ++i)
            for (std::size_t k = i + 1; k < abc.size(); ++k) {
                std::string payload = std::string(1, abc[k]) + std::string(scheme.length() - 2, abc[0]);
                const std::string valid = payload + scheme.check_char(payload);
                std::string trial = valid;
                trial[0] = abc[i];
                const NormalizeResult r = scheme.normalize(trial);
                if (r.error && r.error->kind == SerialErrorKind::bad_check &&
                    std::find(r.error->candidates.begin(), r.error->candidates.end(), valid) != r.error->candidates.end())
                    confusable.push_back(json::array({std::string(1, abc[i]), std::string(1, abc[k])}));
            }
    }
    return dump(json{{"length", scheme.length()},
                     {"alphabet", abc},
                     {"check", scheme.has_check() ? "luhn" : "none"},
                     {"ignore", ignore},
                     {"aliases", aliases},
                     {"confusable", confusable}});
}

std::string fill_text(std::string_view text, std::initializer_list<std::string_view> args) {
    std::string out(text);
    std::size_t i = 0;
    for (const std::string_view a : args) {
        const std::string ph = "{" + std::to_string(i++) + "}";
        for (auto p = out.find(ph); p != std::string::npos; p = out.find(ph, p + a.size())) out.replace(p, ph.size(), a);
    }
    return out;
}

RecallDesk::RecallDesk(Store& store, const SerialScheme& cell_scheme, const RecallConfig& cfg)
    : cfg_(cfg), device_scheme_(recall_device_scheme(cfg)), genealogy_(store, cell_scheme, *device_scheme_) {
    json texts = json::object();
    for (const RecallTextKey& k : recall_text_keys()) texts[std::string(k.key)] = text_of(cfg_, k.key);
    page_config_ = dump(json{{"scheme", json::parse(recall_scheme_json(*device_scheme_))},
                             {"texts", texts},
                             {"max_input_bytes", kMaxRecallInputBytes}});
}

std::optional<RecallAnswer> RecallDesk::reject(std::string_view input) const {
    const auto bad = [](std::string message, std::size_t position, const std::vector<std::string>& candidates) {
        RecallAnswer a;
        a.status = 400;
        a.body = dump(json{{"error", std::move(message)}, {"position", position}, {"candidates", candidates}});
        return a;
    };
    if (input.empty()) return bad("no serial given: /api/recall?serial=SERIAL", 0, {});
    if (input.size() > kMaxRecallInputBytes)
        return bad(fmt::format("the serial is {} bytes long; at most {} are accepted (a serial has {} characters)",
                               input.size(), kMaxRecallInputBytes, device_scheme_->length()),
                   0, {});
    const NormalizeResult n = device_scheme_->normalize(input);
    if (!n) return bad(n.error->message, n.error->position, n.error->candidates);
    return std::nullopt;
}

RecallAnswer RecallDesk::answer(std::string_view input) {
    if (auto rejected = reject(input)) return *rejected;
    RecallAnswer a;
    const NormalizeResult n = device_scheme_->normalize(input);
    // The ship gate's own judgement of the device and of each cell inside it.
    const DeviceLookup d = genealogy_.lookup_device(n.serial);
    a.affected = d.known && std::any_of(d.cells.begin(), d.cells.end(), [](const LookupResult& c) { return !c.may_ship; });
    // Every key, whatever the answer: the shape says nothing about whether the serial is known.
    a.body = dump(json{{"serial", n.serial},
                       {"affected", a.affected},
                       {"status", a.affected ? "affected" : "not_affected"},
                       {"headline", text_of(cfg_, a.affected ? "affected_headline" : "not_affected_headline")},
                       {"action", text_of(cfg_, a.affected ? "affected_action" : "not_affected_action")},
                       {"disposal", text_of(cfg_, "disposal")},
                       {"contact", text_of(cfg_, "contact")}});
    return a;
}

// ---------------------------------------------------------------- rate limit

RateLimiter::RateLimiter(double burst, double per_s, std::size_t max_clients)
    : burst_(std::max(1.0, burst)), per_s_(per_s > 0 ? per_s : 1e-9), max_clients_(std::max<std::size_t>(1, max_clients)) {}

void RateLimiter::make_room(double now_s) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
        if (it->second.tokens + (now_s - it->second.last_s) * per_s_ >= burst_) it = buckets_.erase(it);
        else ++it;
    }
    if (buckets_.size() < max_clients_) return;
    const auto oldest = std::min_element(buckets_.begin(), buckets_.end(),
                                         [](const auto& x, const auto& y) { return x.second.last_s < y.second.last_s; });
    buckets_.erase(oldest);
}

double RateLimiter::take(const std::string& client, double now_s) {
    auto it = buckets_.find(client);
    if (it == buckets_.end()) {
        if (buckets_.size() >= max_clients_) make_room(now_s);
        it = buckets_.emplace(client, Bucket{burst_, now_s}).first;
    }
    Bucket& b = it->second;
    b.tokens = std::min(burst_, b.tokens + std::max(0.0, now_s - b.last_s) * per_s_);
    b.last_s = now_s;
    if (b.tokens >= 1.0) {
        b.tokens -= 1.0;
        return 0.0;
    }
    return (1.0 - b.tokens) / per_s_;
}

std::string recall_client_key(std::string_view address) {
    boost::system::error_code ec;
    const auto a = boost::asio::ip::make_address(std::string(address), ec);
    if (ec) return std::string(address);
    if (a.is_v4()) return a.to_string();
    const auto v6 = a.to_v6();
    if (v6.is_v4_mapped()) return boost::asio::ip::make_address_v4(boost::asio::ip::v4_mapped, v6).to_string();
    auto bytes = v6.to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), static_cast<unsigned char>(0));
    return boost::asio::ip::address_v6(bytes).to_string() + "/64";
}

}  // namespace eol::station::web
