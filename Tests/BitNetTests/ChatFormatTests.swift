import BitNet
import Testing

/// Chat formats chosen from `tokenizer.chat_template` by llama.cpp's substring rules. The real
/// templates of the Llama3-8B-1.58 and Falcon3 files are unverified: these strings are written
/// from the spec (model-families §6, §7) and llama.cpp's classification.
@Suite struct ChatFormatTests {
    static let llama3 = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
    static let falcon3 = "{% for message in messages %}{% if message['role'] == 'system' %}{{ '<|system|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '\\n' }}{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + eos_token + '\\n' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    static let bitnet = "{% for message in messages %}{% if loop.first %}{{ bos_token }}{% endif %}{% if message['role'] == 'user' %}{{ 'Human: ' + message['content'] + '\\n\\nBITNETAssistant: ' + eos_token }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
    static let phi3 = "{% for message in messages %}{{'<|' + message['role'] + '|>' + '\\n' + message['content'] + '<|end|>\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
    static let chatml = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"

    @Test func templatesAreClassifiedLikeLlamaCpp() {
        #expect(ChatFormat.detect(template: Self.llama3) == .llama3)
        #expect(ChatFormat.detect(template: Self.falcon3) == .falcon3)
        #expect(ChatFormat.detect(template: Self.bitnet) == .bitnet)
        #expect(ChatFormat.detect(template: Self.phi3) == .phi3, "phi3 is tested before falcon3")
        #expect(ChatFormat.detect(template: Self.chatml) == .chatml)
        #expect(ChatFormat.detect(template: nil) == .bitnet, "the 2B4T format without a template")
        #expect(ChatFormat.detect(template: "falcon3") == .falcon3, "a format name")
        #expect(ChatFormat.detect(template: "{{ messages }} [INST] unknown") == nil)
    }

    @Test func eachFormatRendersItsTurns() {
        #expect(ChatFormat.llama3.render(user: " Hi ", system: "Be brief.")
                == "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
        #expect(ChatFormat.falcon3.render(user: "Hi", system: "Be brief.") == "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n")
        #expect(ChatFormat.falcon3.render(user: "Hi") == "<|user|>\nHi\n<|assistant|>\n")
        #expect(ChatFormat.bitnet.render(user: "Hi") == "<|begin_of_text|>User: Hi<|eot_id|>Assistant: ")
        #expect(ChatFormat.chatml.render(user: "Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(ChatFormat.phi3.render(user: "Hi") == "<|user|>\nHi<|end|>\n<|assistant|>\n")
        #expect(ChatFormat.bitnet.render(user: "Hi", system: "Be brief.")
                == "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: ")
        #expect(ChatFormat.chatml.render(user: "Hi", system: "Be brief.")
                == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n")
        #expect(ChatFormat.phi3.render(user: "Hi", system: "Be brief.") == "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>\n")
        #expect(ChatFormat.bitnet.render(user: "Hi", system: "  ") == "<|begin_of_text|>User: Hi<|eot_id|>Assistant: ")
    }
}
