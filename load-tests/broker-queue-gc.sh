#!/usr/bin/env bash
# How much garbage collection one classic queue's process does while it is drained: run it just
# before a drain starts; it waits for a consumer of the queue, counts until the queue holds
# nothing (ready or unacked), and prints one line:
#   queue sluice.metrics: drained 300000 in 9.81 s; 160 minor GCs (2388 ms), 78 major GCs (2068 ms), ...
# A drain whose queue process spends seconds in major GCs ran in the broker's expensive state
# (BENCHMARKS.md, "The broker's garbage collection"), whichever consumer drained it.
#
# Usage: load-tests/broker-queue-gc.sh QUEUE [VHOST]
# Needs rabbitmqctl with the right to `eval` on the node (root or the rabbitmq user, as
# deploy/services.sh sets it up); it only reads and traces, and changes nothing in the broker.
set -euo pipefail

queue=${1:?usage: broker-queue-gc.sh QUEUE [VHOST]}
vhost=${2:-/}
# The longest drain it waits for, and the longest it waits for one to start.
max_ms=${MAX_SECONDS:-900}000

read -r -d '' tracer <<ERLANG || true
Name = rabbit_misc:r(<<"${vhost}">>, queue, <<"${queue}">>),
{ok, Q} = rabbit_amqqueue:lookup(Name),
QPid = amqqueue:get_pid(Q),
Depth = fun() -> [{messages, M}] = rabbit_amqqueue:info(Q, [messages]), M end,
Now = fun() -> erlang:monotonic_time(millisecond) end,
Deadline = Now() + ${max_ms},
Initial = Depth(),
%% Until a consumer comes, the queue is only watched, never called: a call would keep an idle
%% queue process from hibernating, and that changes how it collects garbage afterwards.
Consumed = fun() ->
    ets:foldl(fun(Consumer, Found) -> Found orelse element(1, element(1, Consumer)) == Name end,
              false, consumer_created) end,
WaitForStart = fun Wait() ->
    case Consumed() orelse Now() > Deadline of true -> ok; false -> timer:sleep(10), Wait() end end,
WaitForStart(),
erlang:trace(QPid, true, [garbage_collection, monotonic_timestamp]),
{reductions, Reductions0} = erlang:process_info(QPid, reductions),
Started = Now(),
Count = fun Loop(Acc = #{start := S}) ->
    receive
        {trace_ts, _, Start, _, T} when Start == gc_minor_start; Start == gc_major_start ->
            Loop(Acc#{start := T});
        {trace_ts, _, gc_minor_end, Info, T} ->
            Heap = proplists:get_value(heap_size, Info, 0) + proplists:get_value(old_heap_size, Info, 0),
            Loop(Acc#{minor := maps:get(minor, Acc) + 1, minor_t := maps:get(minor_t, Acc) + (T - S),
                      heap := max(Heap, maps:get(heap, Acc))});
        {trace_ts, _, gc_major_end, Info, T} ->
            Heap = proplists:get_value(heap_size, Info, 0) + proplists:get_value(old_heap_size, Info, 0),
            Loop(Acc#{major := maps:get(major, Acc) + 1, major_t := maps:get(major_t, Acc) + (T - S),
                      heap := max(Heap, maps:get(heap, Acc))})
    after 100 ->
        case Depth() == 0 orelse Now() > Deadline of true -> Acc; false -> Loop(Acc) end
    end end,
#{minor := Minor, minor_t := MinorT, major := Major, major_t := MajorT, heap := Heap} =
    Count(#{start => 0, minor => 0, minor_t => 0, major => 0, major_t => 0, heap => 0}),
erlang:trace(QPid, false, [garbage_collection]),
{reductions, Reductions1} = erlang:process_info(QPid, reductions),
Ms = fun(Native) -> erlang:convert_time_unit(Native, native, microsecond) div 1000 end,
Seconds = (Now() - Started) / 1000,
io_lib:format("queue ~s: drained ~b in ~.2f s; ~b minor GCs (~b ms), ~b major GCs (~b ms, "
              "heap up to ~b MiB); ~b reductions per message",
              [<<"${queue}">>, Initial, Seconds, Minor, Ms(MinorT), Major, Ms(MajorT),
               Heap * erlang:system_info(wordsize) div (1024 * 1024),
               (Reductions1 - Reductions0) div max(Initial, 1)])
ERLANG

# eval prints the result as an Erlang string; strip the quotes.
rabbitmqctl --timeout "$((max_ms / 1000 * 2))" eval "lists:flatten(begin ${tracer} end)." |
    sed -e 's/^"//' -e 's/"$//'
