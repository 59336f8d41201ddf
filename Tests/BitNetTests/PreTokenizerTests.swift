import BitNet
import Testing

@Suite struct PreTokenizerTests {
    @Test func llama3Pattern() {
        let p = PreTokenizer.llama3
        #expect(p.split("Hello world") == ["Hello", " world"])
        #expect(p.split("don't") == ["don", "'t"])
        #expect(p.split("I'M HERE") == ["I", "'M", " HERE"])
        #expect(p.split("1234567") == ["123", "456", "7"])
        #expect(p.split("a  b") == ["a", " ", " b"])
        #expect(p.split("x\n\n y") == ["x", "\n\n", " y"])
        #expect(p.split(" (hi)") == [" (", "hi", ")"])
        #expect(p.split("end   ") == ["end", "   "])
        #expect(p.split("über café") == ["über", " café"])
    }

    @Test func defaultPatternIsolatesPunctuation() {
        // llama.cpp's default pre-tokenizer splits punctuation runs first (spec §5.2 (a)).
        let p = PreTokenizer.default
        #expect(p.split("don't") == ["don", "'", "t"])
        #expect(p.split("Hello world") == ["Hello", " world"])
        #expect(p.split("1234567").joined() == "1234567")
    }

    @Test func fragmentsCoverTheText() {
        let texts = ["", " ", "a", "\r\n\r\n", "🙂👍🏽 emoji", "日本語のテキスト", "x = [1, 2, 3];\n\tprint(x)"]
        for t in texts {
            for p in [PreTokenizer.llama3, .default, .gpt2] {
                #expect(p.split(t).joined() == t, "\(p) \(t)")
            }
        }
    }
}
