// Modbus register reads per second against the simulated servers on
// loopback: our driver stack next to a bare libmodbus loop on the same
// server (the reference), printed side by side at the end.
//
//   bare libmodbus   modbus_read_input_registers(ctx, 0, 10) in a tight loop
//   ModbusClient     read_registers(input, 0, 10): our client layer
//   thermo read_all  a full ET-7018Z scan: values + type codes + burn-out
//                    coils = 3 requests (items = requests)
//   load measure     M97 U and I, one FC03 request, vs bare modbus_read_registers
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>

#include <modbus/modbus.h>

#include "eol/instruments/modbus_client.hpp"
#include "eol/instruments/modbus_load.hpp"
#include "eol/instruments/modbus_thermo.hpp"
#include "eol/sim/modbus_load_server.hpp"
#include "eol/sim/modbus_thermo_server.hpp"
#include "rate_table.hpp"

using namespace eol;

namespace {

/// config/ of the source tree ($EOL_CONFIG_DIR overrides).
std::string config_dir() {
    if (const char* e = std::getenv("EOL_CONFIG_DIR")) return e;
    return EOL_BENCH_CONFIG_DIR;  // absolute, from CMake (__FILE__ is relative to the build folder)
}

struct Servers {
    std::shared_ptr<sim::Fixture> fixture;
    std::unique_ptr<sim::ModbusThermoServer> thermo;
    std::unique_ptr<sim::ModbusLoadServer> load;
    instruments::RegisterMap thermo_map, load_map;

    Servers() {
        fixture = std::make_shared<sim::Fixture>(4, std::make_shared<sim::SimClock>(1.0), 25.0, 1);
        for (std::size_t k = 0; k < 4; ++k) fixture->load_cell(k, "B" + std::to_string(k), {});
        thermo_map = instruments::load_register_map(config_dir() + "/maps/icpdas-et7018z.toml");
        load_map = instruments::load_register_map(config_dir() + "/maps/maynuo-m97.toml");
        std::vector<sim::TcChannel> ch;
        for (std::size_t k = 0; k < 4; ++k) ch.push_back(sim::TcChannel::cell(k));
        thermo = std::make_unique<sim::ModbusThermoServer>(fixture, thermo_map, "127.0.0.1", 0, ch);
        thermo->start();
        load = std::make_unique<sim::ModbusLoadServer>(fixture, load_map, "127.0.0.1", 0, 0);
        load->start();
    }
    instruments::Address addr(std::uint16_t port) const {
        return instruments::parse_address("tcp://127.0.0.1:" + std::to_string(port));
    }
};

Servers& servers() {
    static Servers s;
    return s;
}

modbus_t* bare(std::uint16_t port) {
    modbus_t* ctx = modbus_new_tcp("127.0.0.1", port);
    modbus_set_response_timeout(ctx, 1, 0);
    if (modbus_connect(ctx) != 0) std::abort();
    return ctx;
}

void BM_bare_libmodbus_read_input_registers(benchmark::State& state) {
    modbus_t* ctx = bare(servers().thermo->port());
    std::uint16_t regs[10];
    for (auto _ : state)
        if (modbus_read_input_registers(ctx, 0, 10, regs) != 10) state.SkipWithError("read failed");
    state.SetItemsProcessed(state.iterations());
    modbus_close(ctx);
    modbus_free(ctx);
}
BENCHMARK(BM_bare_libmodbus_read_input_registers)->UseRealTime();

void BM_driver_client_read_registers(benchmark::State& state) {
    instruments::ModbusClient c("bench", servers().addr(servers().thermo->port()));
    c.connect();
    for (auto _ : state) benchmark::DoNotOptimize(c.read_registers(instruments::RegTable::input, 0, 10));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_driver_client_read_registers)->UseRealTime();

void BM_driver_thermo_read_all(benchmark::State& state) {
    auto r = instruments::make_modbus_thermo("bench", servers().addr(servers().thermo->port()),
                                             servers().thermo_map);
    r->connect();
    for (auto _ : state) benchmark::DoNotOptimize(r->read_all());
    state.SetItemsProcessed(state.iterations() * 3);  // requests per scan
    state.counters["scans/s"] = benchmark::Counter(static_cast<double>(state.iterations()),
                                                   benchmark::Counter::kIsRate);
}
BENCHMARK(BM_driver_thermo_read_all)->UseRealTime();

void BM_bare_libmodbus_read_registers_load(benchmark::State& state) {
    modbus_t* ctx = bare(servers().load->port());
    std::uint16_t regs[4];
    for (auto _ : state)
        if (modbus_read_registers(ctx, 0x0B00, 4, regs) != 4) state.SkipWithError("read failed");
    state.SetItemsProcessed(state.iterations());
    modbus_close(ctx);
    modbus_free(ctx);
}
BENCHMARK(BM_bare_libmodbus_read_registers_load)->UseRealTime();

void BM_driver_load_measure(benchmark::State& state) {
    auto l = instruments::make_modbus_load("bench", servers().addr(servers().load->port()),
                                           servers().load_map);
    l->connect();
    for (auto _ : state) benchmark::DoNotOptimize(l->measure(1));
    state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_driver_load_measure)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    eol::bench::RateCollector rates;
    benchmark::RunSpecifiedBenchmarks(&rates);
    const double bare_in = rates.rate("BM_bare_libmodbus_read_input_registers");
    using eol::bench::print_rate_row;
    eol::bench::print_rate_header("Modbus register reads per second on loopback (simulated servers)", "bare lib");
    print_rate_row("FC04 ×10, ModbusClient vs modbus_read_input_registers", rates.rate("BM_driver_client_read_registers"),
                   bare_in);
    print_rate_row("thermo read_all (requests/s; 3 per scan)", rates.rate("BM_driver_thermo_read_all"), bare_in);
    print_rate_row("M97 measure (U, I) vs modbus_read_registers", rates.rate("BM_driver_load_measure"),
                   rates.rate("BM_bare_libmodbus_read_registers_load"));
    benchmark::Shutdown();
    return 0;
}
