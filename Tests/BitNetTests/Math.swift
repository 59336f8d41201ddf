#if canImport(Glibc)
import Glibc
#endif
func _glibcExp(_ x: Double) -> Double { exp(x) }
func _glibcLog(_ x: Double) -> Double { log(x) }
