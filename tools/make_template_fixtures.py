"""Make the chat-template golden fixtures that `tests/templates.rs` compares against.

ftui must render a chat template exactly as transformers' `apply_chat_template` does
(DESIGN.md, "Correctness standard"). CI has no Python, so this script renders every
case once with transformers' own Jinja2 environment and commits the text it gives.

Inputs, all in `tests/fixtures/templates/`:

* `<model>.jinja`: real chat templates, byte for byte as their Hugging Face repos ship
  them (the Hub is not reachable where this runs, so they come from public copies):
  - `smollm2-135m-instruct`: metadata key `tokenizer.chat_template` of
    `models/SmolLM2-135M-Instruct.Q4_1.gguf` (read with the `gguf` package).
  - `llama-3.1-8b-instruct`, `llama-3.2-3b-instruct` (also Llama-3.2-1B-Instruct's),
    `qwen2.5-7b-instruct` (the same for every Qwen2.5-Instruct size): llama.cpp's
    `models/templates/*.jinja`, which its `scripts/get_chat_template.py` writes from
    each repo's `tokenizer_config.json` (taken from the llama-cpp-python 0.3.16 sdist).
  - `mistral-7b-instruct-v0.3`: Mistral's "v3" tool-calling template as llama.cpp's
    `tests/test-chat-template.cpp` carries it (same sdist), identical to the
    `tokenizer_config.json` copies of Mistral-7B-Instruct-v0.3 found in public code.
  - `phi-3-mini-4k-instruct`: the template of Phi-3-mini-4k-instruct's
    `tokenizer_config.json` as public copies quote it (Phi-3.5-mini's, which llama.cpp
    carries, differs only by `and message['content']`).
  - `llama-3-8b-instruct` (Meta-Llama-3-8B-Instruct), `zephyr-7b-beta`
    (HuggingFaceH4/zephyr-7b-beta) and `chatml` (the generic ChatML template trl's
    `setup_chat_format` installs): public copies; ftui's built-in templates must equal
    these files (`builtin()` in `src/template/builtin.rs`).
* `*-generation.jinja`: templates of our own with `{% generation %}` blocks (as trl adds
  them for `assistant_only_loss`), to check the assistant spans.

Outputs: `<name>.json` per template (inputs, expected text or error, assistant spans as
character offsets like transformers gives and as UTF-8 byte offsets like ftui gives),
and `jinja-features.json`: small templates that pin down the Jinja2 semantics chat
templates rely on (whitespace control, filters, tests, Python string methods, output
of None/True/lists, tojson, slicing, loop variables, namespace, errors).

Run from the repository root with transformers and jinja2 installed (torch is not
needed):

    python -m venv /tmp/tpl-venv && /tmp/tpl-venv/bin/pip install transformers jinja2
    /tmp/tpl-venv/bin/python tools/make_template_fixtures.py

Nothing is random and no clock is read (Llama 3.2's template gets `date_string`), so two
runs write identical files.
"""

import json
from pathlib import Path

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "templates"

SMOLLM2_SPECIAL = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "unk_token": "<|endoftext|>",
                   "pad_token": "<|im_end|>"}
LLAMA3_SPECIAL = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
MISTRAL_SPECIAL = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
PHI3_SPECIAL = {"bos_token": "<s>", "eos_token": "<|endoftext|>", "unk_token": "<unk>",
                "pad_token": "<|endoftext|>"}
QWEN2_SPECIAL = {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}

SINGLE = [{"role": "user", "content": "Hello! What is 2+2?"}]
MULTI = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "¿Qué tal? Tell me a joke 😀\n"},
    {"role": "assistant", "content": "  Why did the chicken cross the road? 🐔  "},
]
# Keys whose value is None are dropped by apply_chat_template before rendering.
WITH_NONE = [
    {"role": "user", "content": "What's 3 times 4?", "tool_calls": None},
    {"role": "assistant", "content": "12", "name": None},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city (°C, \"quoted\", <tags> & co).",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "days": {"type": "integer", "minimum": 1, "maximum": 7.5},
                    "units": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]
TOOL_CALL_CHAT = [
    {"role": "user", "content": "Weather in Zürich?"},
    {
        "role": "assistant",
        "tool_calls": [
            {"id": "call12345", "type": "function",
             "function": {"name": "get_weather", "arguments": {"city": "Zürich", "days": 2, "ok": True,
                                                               "extra": None, "ratio": 0.5}}}
        ],
    },
    {"role": "tool", "tool_call_id": "call12345", "content": "{\"temp\": 21.5}"},
    {"role": "assistant", "content": "It is 21.5 °C in Zürich."},
]
NOT_ALTERNATING = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def basic_cases(extra=None):
    cases = []
    for name, messages in (("single-turn", SINGLE), ("multi-turn", MULTI)):
        for agp in (False, True):
            cases.append({"name": f"{name}{'-generation-prompt' if agp else ''}", "messages": messages,
                          "add_generation_prompt": agp, "extra": dict(extra or {})})
    cases.append({"name": "none-valued-keys", "messages": WITH_NONE, "add_generation_prompt": False,
                  "extra": dict(extra or {})})
    return cases


TEMPLATES = [
    ("smollm2-135m-instruct", SMOLLM2_SPECIAL, basic_cases()),
    ("phi-3-mini-4k-instruct", PHI3_SPECIAL, basic_cases()),
    ("llama-3.1-8b-instruct", LLAMA3_SPECIAL, basic_cases() + [
        {"name": "tools", "messages": SINGLE, "tools": TOOLS, "add_generation_prompt": True},
        {"name": "tools-in-system", "messages": MULTI, "tools": TOOLS, "add_generation_prompt": True,
         "extra": {"tools_in_user_message": False}},
        {"name": "tool-calls", "messages": TOOL_CALL_CHAT, "tools": TOOLS, "add_generation_prompt": False},
        {"name": "builtin-tools", "messages": MULTI, "add_generation_prompt": True,
         "extra": {"builtin_tools": ["brave_search", "wolfram_alpha", "code_interpreter"]}},
    ]),
    ("llama-3.2-3b-instruct", LLAMA3_SPECIAL, basic_cases({"date_string": "05 Mar 2025"}) + [
        {"name": "tools", "messages": MULTI, "tools": TOOLS, "add_generation_prompt": True,
         "extra": {"date_string": "05 Mar 2025"}},
        {"name": "tools-without-user-message", "messages": [MULTI[0]], "tools": TOOLS,
         "add_generation_prompt": True, "extra": {"date_string": "05 Mar 2025"}},
    ]),
    ("qwen2.5-7b-instruct", QWEN2_SPECIAL, basic_cases() + [
        {"name": "tools", "messages": MULTI, "tools": TOOLS, "add_generation_prompt": True},
        {"name": "tool-calls", "messages": TOOL_CALL_CHAT, "tools": TOOLS, "add_generation_prompt": True},
    ]),
    ("mistral-7b-instruct-v0.3", MISTRAL_SPECIAL, basic_cases() + [
        {"name": "tools", "messages": MULTI[:4], "tools": TOOLS, "add_generation_prompt": False},
        {"name": "tool-calls", "messages": TOOL_CALL_CHAT, "tools": TOOLS, "add_generation_prompt": False},
        {"name": "roles-must-alternate", "messages": NOT_ALTERNATING, "add_generation_prompt": False},
    ]),
    ("llama-3-8b-instruct", LLAMA3_SPECIAL, basic_cases()),
    ("zephyr-7b-beta", MISTRAL_SPECIAL, basic_cases()),
    ("chatml", SMOLLM2_SPECIAL, basic_cases()),
    ("smollm2-generation", SMOLLM2_SPECIAL, basic_cases()),
    ("llama-3.2-generation", LLAMA3_SPECIAL, basic_cases({"date_string": "05 Mar 2025"}) + [
        {"name": "tool-calls", "messages": TOOL_CALL_CHAT[:2] + TOOL_CALL_CHAT[3:], "tools": TOOLS,
         "add_generation_prompt": False, "extra": {"date_string": "05 Mar 2025"}},
    ]),
]

# (name, template, context). The context is passed like apply_chat_template's extra
# keyword arguments; "messages" in it becomes the conversation (default: empty).
CONV = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ho"},
        {"role": "user", "content": "bye"}]
FEATURES = [
    # Whitespace control: trim_blocks, lstrip_blocks, '-' and '+' modifiers, no trailing newline.
    ("trim_blocks", "{% if true %}\nx\n{% endif %}\ny", {}),
    ("lstrip_blocks", "a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("lstrip_blocks only before tags", "  {{ 'x' }}\n  {# c #}\n  {% set a = 1 %}\ny", {}),
    ("minus modifiers", "a   {{- 'b' -}}   c  {%- if true -%}  d  {%- endif %}  e", {}),
    ("plus disables lstrip", "a\n    {%+ if true %}b{% endif %}\n", {}),
    ("trailing newline dropped", "x\n", {}),
    ("only one trailing newline dropped", "x\n\n", {}),
    ("crlf text", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\n", {}),
    ("comments", "a{# gone #}b\n  {#- trimmed -#}  c", {}),
    ("raw block", "{% raw %}{{ not rendered }}{% generation %}{% endraw %}", {}),
    # Output of values (Python str()).
    ("none and bools", "{{ none }} {{ None }} {{ true }} {{ True }} {{ false }} {{ False }}", {}),
    ("numbers", "{{ 1 + 2 }} {{ 7 // 2 }} {{ 7 % 3 }} {{ -7 // 2 }} {{ 2 ** 10 }} {{ 7 / 2 }} {{ 4 / 2 }} {{ 1.5 + 1 }}", {}),
    ("floats", "{{ 0.1 + 0.2 }} {{ 1e20 }} {{ 1.0e-7 }} {{ 3.0 }} {{ 10 / 3 }} {{ x }} {{ y }}", {"x": 21.5, "y": 1e16}),
    ("lists and dicts", "{{ [1, 'a', none, true, 2.5] }} {{ {'k': 'v', 'n': [1]} }} {{ xs }} {{ d }}",
     {"xs": ["it's", "say \"hi\"", "tab\there"], "d": {"a": None, "b": False}}),
    # (A tuple literal prints as a list in ftui: minijinja has no tuple literals.)
    ("tuples from items", "{{ d.items() | list }} {{ d | items | list }} {% for t in d.items() %}{{ t }}{% endfor %}", {"d": {"a": 1}}),
    ("repr quoting", "{{ xs }}", {"xs": ["a'b\"c", "é\u2028\u00a0", "\x7f\x00", "back\\slash", "😀"]}),
    ("nested floats", "{{ [1e16, 0.5, -0.0, 100.0] }} {{ {'x': 1e-7} }}", {}),
    # (`~` formats with minijinja's own str(), which writes 1e16 as 10000000000000000.0.)
    ("tilde with other types", "{{ 'a' ~ none ~ true ~ 1.5 ~ [1, 'b'] ~ {'k': 2.0} }}", {}),
    ("truthiness", "{% for v in [[], {}, '', 0, 0.0, none, [0], 'x', 1] %}{{ 1 if v else 0 }}{% endfor %}", {}),
    ("python modulo and division", "{{ -7 % 3 }} {{ 7 % -3 }} {{ 7.5 // 2 }} {{ 2 ** -1 }} {{ 10 // 3 }} {{ -7 // 2.0 }}", {}),
    # (Python's `'%s' % x` is not available: minijinja has no string % operator.)
    ("format method", "{{ '{} and {}'.format(1, 'b') }}", {}),
    ("round returns float", "{{ 3 | round }} {{ 2.5 | round }} {{ 2.675 | round(2) }} {{ 7 | round(0, 'floor') }}", {}),
    ("title filter and method", "{{ \"it's a dog-cat\" | title }} {{ \"it's a dog-cat\".title() }}", {}),
    ("title edge cases", "{{ s | title }}|{{ s.title() }}|{{ s | capitalize }}|{{ s.capitalize() }}", {"s": "hello(wORLD) [x] 1st <b>ǆ ÉTÉ"}),
    ("sort unique", "{{ [3, 1, 2] | sort(reverse=true) }} {{ ['b', 'a', 'b'] | unique | list }} {{ ys | sort(attribute='n') | map(attribute='n') | list }}",
     {"ys": [{"n": 2}, {"n": 1}]}),
    ("length chains", "{{ msgs | map(attribute='content') | map('length') | sum }} {{ msgs | length > 0 }}", {"msgs": CONV}),
    ("selectattr defined", "{{ msgs | selectattr('tool_calls', 'defined') | list | length }}",
     {"msgs": [{"role": "user"}, {"role": "assistant", "tool_calls": []}]}),
    ("tojson of lists from filters", "{{ [3, 1] | sort | tojson }} {{ d | dictsort | tojson }} {{ xs | map('upper') | list | tojson }} "
     "{{ xs | select | list | tojson }} {{ d.keys() | list | tojson }} {{ msgs[1:] | tojson }} {{ xs | reverse | list | tojson }}",
     {"d": {"b": 1, "a": 2}, "xs": ["a", "b"], "msgs": CONV}),
    # (json.dumps refuses a generator, `range` or `dict.items()`; ftui writes them as lists,
    # because minijinja also makes slices such as `messages[1:]` lazily.)
    ("tojson int keys", "{{ {1: 'a', 'b': none} | tojson }}", {}),
    ("none comparisons", "{{ none is none }}{{ none == None }}{{ x is none }}", {"x": None}),
    ("length of undefined", "{{ missing | length }}", {}),
    ("undefined plus string fails", "{{ missing + 'x' }}", {}),
    ("string plus number fails", "{{ 'a' + 1 }}", {}),
    ("unknown escape kept", "{{ 'a\\d' }}|{{ 'tab\\tx' }}", {}),
    ("string comparisons", "{{ 'a' < 'b' }}{{ 'B' < 'a' }}{{ [1, 2] < [1, 3] }}", {}),
    ("string filter", "{{ 5 | string }} {{ true | string }} {{ none | string }} {{ [1, 'x'] | string }}", {}),
    ("string concat", "{{ 'a' + 'b' }}{{ 'n=' ~ 3 }}{{ 'x' ~ 'y' ~ 1.5 }}", {}),
    ("string repeat", "{{ '-' * 3 }}{{ 3 * 'ab' }}", {}),
    ("list concat", "{{ ([1] + [2, 3]) | length }}", {}),
    ("undefined prints nothing", "[{{ missing }}][{{ d.missing }}][{{ d['missing'] }}]", {"d": {}}),
    ("undefined tests", "{{ missing is defined }}{{ missing is undefined }}{{ d.missing is defined }}{{ not missing }}",
     {"d": {}}),
    ("undefined iterates as empty", "{% for x in missing %}{{ x }}{% else %}empty{% endfor %}", {}),
    ("undefined attribute of undefined fails", "{{ missing.attr }}", {}),
    ("string escapes", "{{ 'a\\nb\\t\"c\"' }}|{{ \"it's\" }}|{{ '\\u00e9\\x41' }}|{{ 'back\\\\slash' }}", {}),
    # Expressions.
    ("comparisons", "{{ 1 < 2 }}{{ 2 <= 1 }}{{ 'a' == 'a' }}{{ 'a' != 'a' }}{{ 3 > 2 }}{{ 1 >= 1 }}{{ 1 == 1.0 }}", {}),
    ("logic", "{{ true and false }}{{ true or false }}{{ not true }}{{ not (1 == 2) }}{{ 'x' or 'y' }}{{ '' or 'y' }}{{ 0 and 1 }}", {}),
    ("in", "{{ 'b' in 'abc' }}{{ 2 in [1, 2] }}{{ 'k' in d }}{{ 'q' not in d }}", {"d": {"k": 1}}),
    ("conditional expression", "{{ 'yes' if flag else 'no' }}[{{ 'a' if false }}]", {"flag": True}),
    ("subscripts", "{{ xs[0] }}{{ xs[-1] }}{{ d['k'] }}{{ d.k }}{{ 'hello'[1] }}{{ 'hello'[-1] }}",
     {"xs": [1, 2, 3], "d": {"k": "v"}}),
    ("slices", "{{ xs[1:] }}{{ xs[:2] }}{{ xs[::-1] }}{{ xs[::2] }}{{ xs[1::2] }}{{ xs[-1:0:-1] }}{{ xs[:-2:-1] }}{{ xs[10:] }}",
     {"xs": [1, 2, 3, 4, 5]}),
    ("string slices", "{{ 'hello'[1:3] }}|{{ 'abc'[::-1] }}|{{ 'héllo wörld'[2:] }}|{{ s[:-1] }}", {"s": "{\"a\": 1}"}),
    ("list and dict literals", "{{ [1, 'a'][1] }}{{ {'k': 1}['k'] }}{{ (1, 2)[0] }}", {}),
    ("index out of range is undefined", "[{{ xs[5] }}]{{ xs[5] is defined }}", {"xs": [1]}),
    ("messages[0] of empty list", "{% if messages[0]['role'] == 'system' %}s{% else %}n{% endif %}", {}),
    # Tests.
    ("type tests",
     "{{ s is string }}{{ n is string }}{{ n is number }}{{ f is number }}{{ b is number }}{{ n is integer }}{{ f is float }}"
     "{{ b is boolean }}{{ d is mapping }}{{ xs is mapping }}{{ xs is sequence }}{{ s is sequence }}{{ s is iterable }}"
     "{{ d is iterable }}{{ z is none }}{{ s is none }}{{ n is odd }}{{ n is even }}{{ n is divisibleby(3) }}",
     {"s": "str", "n": 3, "f": 1.5, "b": True, "d": {"a": 1}, "xs": [1], "z": None}),
    ("tests on undefined and none", "{{ missing is iterable }}{{ none is iterable }}{{ d is sequence }}{{ 1 is iterable }}"
     "{{ missing is string }}{{ missing is number }}{{ true is integer }}{{ missing is mapping }}{{ none is string }}",
     {"d": {"a": 1}}),
    ("filters on undefined and none", "[{{ missing | string }}][{{ missing | trim }}][{{ none | trim }}][{{ missing | join(',') }}]"
     "[{{ missing | list }}][{{ missing | upper }}]", {}),
    ("boolean tests", "{{ b is true }}{{ b is false }}{{ 1 is true }}{{ s is lower }}{{ s is upper }}",
     {"b": True, "s": "abc"}),
    ("comparison tests", "{{ 1 is eq(1) }}{{ 1 is equalto(2) }}{{ 2 is gt(1) }}{{ 'a' is in(['a']) }}{{ 2 is ne(2) }}", {}),
    ("content is string", "{% for m in messages %}{{ m.content is string }},{% endfor %}",
     {"messages": [{"role": "user", "content": "x"},
                   {"role": "user", "content": [{"type": "text", "text": "y"}]}]}),
    # Filters.
    ("trim", "[{{ '  x \\n' | trim }}][{{ '\\u3000x\\x1f' | trim }}][{{ 'xxaxx' | trim('x') }}]", {}),
    ("length", "{{ xs | length }}{{ 'héllo' | length }}{{ d | length }}{{ xs | count }}", {"xs": [1, 2, 3], "d": {"a": 1}}),
    ("case filters", "{{ 'hello wORLD' | upper }} {{ 'Hello' | lower }} {{ 'hello wORLD' | title }} {{ 'hello wORLD' | capitalize }}", {}),
    ("join", "{{ xs | join(', ') }}|{{ ['a', 'b'] | join }}|{{ ys | join('-', attribute='n') }}",
     {"xs": [1, "a", True, None], "ys": [{"n": 1}, {"n": 2}]}),
    ("first last", "{{ xs | first }}{{ xs | last }}{{ 'abc' | first }}", {"xs": [1, 2, 3]}),
    ("default", "{{ missing | default('d') }}{{ none | default('d') }}{{ '' | default('d') }}{{ '' | default('d', true) }}{{ missing | d('x') }}", {}),
    ("replace", "{{ 'a-b-c' | replace('-', '+') }}{{ 'aaa' | replace('a', 'b', 2) }}", {}),
    ("list filter", "{{ 'ab' | list }}{{ d | list }}", {"d": {"x": 1, "y": 2}}),
    ("selectattr", "{{ msgs | selectattr('role', 'equalto', 'user') | list | length }} "
     "{{ (msgs | selectattr('role', 'equalto', 'user') | list)[-1].content }} "
     "{{ msgs | rejectattr('role', 'equalto', 'user') | map(attribute='content') | join(',') }}",
     {"msgs": CONV}),
    ("selectattr truthy", "{% for i in items | selectattr('on') %}{{ i.n }}{% endfor %}",
     {"items": [{"n": 1, "on": True}, {"n": 2, "on": False}, {"n": 3}]}),
    ("select reject", "{{ xs | select('odd') | list }}{{ xs | reject('odd') | list }}{{ ys | reject('equalto', 'b') | join }}",
     {"xs": [1, 2, 3, 4], "ys": ["a", "b", "c"]}),
    ("map", "{{ xs | map('upper') | join }}{{ msgs | map(attribute='role') | unique | list }}",
     {"xs": ["a", "b"], "msgs": CONV}),
    ("items and dictsort", "{% for k, v in d | items %}{{ k }}={{ v }};{% endfor %}{% for k, v in d | dictsort %}{{ k }};{% endfor %}",
     {"d": {"b": 1, "a": 2}}),
    ("numeric filters", "{{ '3' | int + 1 }} {{ '2.5' | float }} {{ -3 | abs }} {{ 2.567 | round(1) }} {{ [1, 2, 3] | sum }} "
     "{{ [3, 1, 2] | max }} {{ [3, 1, 2] | min }} {{ [3, 1, 2] | sort }} {{ [1, 2] | reverse | list }}", {}),
    ("tojson", "{{ d | tojson }}", {"d": {"a": [1, "x", None, True, 2.5, 1e16], "é": "<&'\">", "n": {}}}),
    ("tojson indent", "{{ d | tojson(indent=4) }}\n{{ d | tojson(indent=2) }}\n{{ [] | tojson(indent=2) }}",
     {"d": {"b": [1, {"c": "x"}], "a": {}, "e": []}}),
    ("tojson options", "{{ d | tojson(separators=(',', ':')) }} {{ d | tojson(sort_keys=true) }} {{ d | tojson(ensure_ascii=true) }}",
     {"d": {"z": "ü", "a": [1, 2]}}),
    ("tojson scalars", "{{ 'x\\ny' | tojson }} {{ 3 | tojson }} {{ none | tojson }} {{ 1.0 | tojson }}", {}),
    ("indent", "{{ 'a\\nb\\n\\nc' | indent(2) }}|{{ 'a\\nb' | indent(2, true) }}", {}),
    ("filter binds tighter than plus", "{{ 'a' + ' b ' | trim + 'c' }}", {}),
    ("batch slice", "{{ [1, 2, 3] | batch(2) | list }}", {}),
    # Python string methods.
    ("strip methods", "[{{ ' x '.strip() }}][{{ ' x '.lstrip() }}][{{ ' x '.rstrip() }}][{{ '\\n\\nx\\n'.strip('\\n') }}]"
     "[{{ 'xxay'.lstrip('x') }}][{{ 'ayyx'.rstrip('xy') }}][{{ ' a '.strip(none) }}]", {}),
    ("case methods", "{{ 'ab'.upper() }}{{ 'AB'.lower() }}{{ 'hello world'.title() }}{{ 'hELLO'.capitalize() }}", {}),
    ("startswith endswith", "{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith('x') }}{{ 'abc'.startswith(('x', 'a')) }}", {}),
    ("split", "{{ 'a<b>c<b>'.split('<b>') }}{{ ' a  b '.split() }}{{ 'x'.split(',') }}{{ 'a,b,c'.split(',', 1) }}"
     "{{ 'r</think>a'.split('</think>')[-1] }}", {}),
    ("find replace count", "{{ 'hello'.find('l') }}{{ 'hello'.find('z') }}{{ 'aaa'.replace('a', 'b') }}{{ 'aaa'.count('a') }}", {}),
    ("join method", "{{ ', '.join(['a', 'b']) }}", {}),
    ("dict methods", "{{ d.get('k') }}{{ d.get('q', 'dflt') }}[{{ d.get('q') }}]{% for k in d.keys() %}{{ k }}{% endfor %}"
     "{% for v in d.values() %}{{ v }}{% endfor %}{% for k, v in d.items() %}{{ k }}{{ v }}{% endfor %}",
     {"d": {"k": "v", "j": 2}}),
    ("string predicates", "{{ '123'.isdigit() }}{{ 'abc'.isalpha() }}{{ 'ab1'.isalnum() }}{{ '  '.isspace() }}{{ 'ab'.islower() }}", {}),
    # Statements.
    ("if elif else", "{% for n in [1, 2, 3] %}{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %},{% endfor %}", {}),
    ("loop variables", "{% for x in items %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
     "{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}", {"items": ["a", "b"]}),
    ("loop previtem nextitem cycle", "{% for x in [1, 2, 3] %}{{ loop.previtem }}/{{ loop.nextitem }}/{{ loop.cycle('a', 'b') }};{% endfor %}", {}),
    ("for else", "{% for x in [] %}x{% else %}empty{% endfor %}", {}),
    ("for with condition", "{% for x in [1, 2, 3, 4] if x % 2 == 0 %}{{ loop.index }}:{{ x }}{% if not loop.last %},{% endif %}{% endfor %}", {}),
    ("for over items with condition", "{% for k, v in d.items() if k != 'b' %}{{ k }}={{ v }};{% endfor %}", {"d": {"a": 1, "b": 2, "c": 3}}),
    ("reversed messages", "{% for m in messages[::-1] %}{{ m.content }}{% endfor %}", {"messages": CONV}),
    ("break continue", "{% for n in [1, 2, 3, 4] %}{% if n == 2 %}{% continue %}{% endif %}{% if n == 4 %}{% break %}{% endif %}{{ n }}{% endfor %}", {}),
    ("set scoping", "{% set a = 1 %}{% for x in [1] %}{% set a = 2 %}{{ a }}{% endfor %}{{ a }}{% if true %}{% set b = 3 %}{% endif %}{{ b }}", {}),
    ("set block", "{% set x %}  inner {{ 1 }}\n{% endset %}[{{ x }}]", {}),
    ("namespace", "{% set ns = namespace(total=0, seen=false) %}{% for x in [1, 2, 3] %}{% set ns.total = ns.total + x %}"
     "{% if x == 2 %}{% set ns.seen = true %}{% endif %}{% endfor %}{{ ns.total }} {{ ns.seen }}", {}),
    ("empty namespace", "{% set ns = namespace() %}{% set ns.a = 'x' %}{{ ns.a }}", {}),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('a') }} {{ greet('b', punct='?') }}", {}),
    ("macro call block", "{% macro wrap() %}[{{ caller() }}]{% endmacro %}{% call wrap() %}in{% endcall %}", {}),
    ("filter block", "{% filter upper %}abc {{ 'd' }}{% endfilter %}", {}),
    ("range", "{% for i in range(3) %}{{ i }}{% endfor %}{{ range(1, 8, 3) | list }}{{ range(3, -1, -1) | list }}", {}),
    ("dict global", "{{ dict(a=1, b='x') }}{{ dict(a=1)['a'] }}", {}),
    # Things transformers adds.
    ("raise_exception", "a{{ raise_exception('Conversation roles must alternate!') }}b", {}),
    ("strftime_now is defined", "{{ strftime_now is defined }}{{ raise_exception is defined }}{{ namespace is defined }}", {}),
    ("special tokens and kwargs", "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}|{{ custom }}",
     {"bos_token": "<s>", "eos_token": "</s>", "custom": "kw"}),
    ("tools and documents are none", "{{ tools is none }}{{ documents is none }}{{ tools is defined }}{{ add_generation_prompt }}", {}),
    ("reasoning aliases", "{% for m in messages %}{{ m.reasoning_content }}|{{ m.thinking }}|{{ m.reasoning }};{% endfor %}",
     {"messages": [{"role": "assistant", "content": "x", "reasoning": "because"},
                   {"role": "assistant", "content": "y", "thinking": "hmm"}]}),
    ("none keys dropped", "{% for m in messages %}{{ 'tool_calls' in m }}{{ m.tool_calls is defined }};{% endfor %}",
     {"messages": [{"role": "user", "content": "x", "tool_calls": None}]}),
    ("generation block", "{% for m in messages %}{{ m.role }}: {% generation %}{{ m.content }}{% endgeneration %}\n{% endfor %}",
     {"messages": CONV}),
    ("generation block whitespace", "<s>\n  {%- generation -%}\n  {{ 'a' }}\n  {%- endgeneration %}\n  {% generation %}\n  b\n  {% endgeneration %}\nc",
     {}),
    # (Nested blocks are left out: transformers gives an inner block the start of its
    # outer block, because the outer block's text is not yielded yet; ftui gives the
    # inner block's true place.)
    ("empty generation block", "x{% generation %}{% endgeneration %}y{% generation %}é{% endgeneration %}", {}),
    ("generation block in a macro", "{% macro m(t) %}{% generation %}{{ t }}{% endgeneration %}{% endmacro %}a{{ m('b') }}", {}),
]


def render(template, special, messages, add_generation_prompt, tools=None, documents=None, extra=None):
    """Render as tokenizer.apply_chat_template(..., tokenize=False) does, with spans."""
    normalize = getattr(ctu, "_normalize_chat_messages", None)
    if normalize is not None:  # transformers 5 drops None-valued message keys first
        messages = normalize(messages)
    kwargs = {**special, **(extra or {})}
    rendered, spans = ctu.render_jinja_template(
        conversations=[messages], tools=tools, documents=documents, chat_template=template,
        return_assistant_tokens_mask=True, add_generation_prompt=add_generation_prompt, **kwargs)
    return rendered[0], [list(s) for s in spans[0]]


def byte_spans(text, spans):
    return [[len(text[:s].encode("utf-8")), len(text[:e].encode("utf-8"))] for s, e in spans]


def run_case(template, special, case):
    out = dict(case)
    try:
        text, spans = render(template, special, case["messages"], case["add_generation_prompt"],
                             case.get("tools"), case.get("documents"), case.get("extra"))
    except Exception as exc:  # the fixture records what transformers raises
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["expected"] = text
    out["assistant_char_spans"] = spans
    out["assistant_byte_spans"] = byte_spans(text, spans)
    return out


def main():
    versions = {"transformers": transformers.__version__, "jinja2": jinja2.__version__}
    for name, special, cases in TEMPLATES:
        template = (OUT / f"{name}.jinja").read_text(encoding="utf-8")
        doc = {"template": f"{name}.jinja", "made_with": versions, "special_tokens": special,
               "cases": [run_case(template, special, case) for case in cases]}
        (OUT / f"{name}.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"{name}: {len(cases)} cases")

    features = []
    for name, template, context in FEATURES:
        context = dict(context)
        messages = context.pop("messages", [])
        case = {"name": name, "template": template, "messages": messages, "add_generation_prompt": False,
                "extra": context}
        result = run_case(template, {}, case)
        features.append(result)
    doc = {"made_with": versions, "cases": features}
    (OUT / "jinja-features.json").write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"jinja-features: {len(features)} cases")


if __name__ == "__main__":
    main()
