print("build with -DFUZZING to get the libFuzzer driver")
