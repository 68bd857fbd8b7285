//! A function that fails at once: it writes its arguments (or a default message) to stderr and
//! exits with status 3, before ever listening — what a crashing function looks like to Ember.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let message = if args.is_empty() {
        "ember-fail: failing on purpose".to_owned()
    } else {
        args.join(" ")
    };
    eprintln!("{message}");
    std::process::exit(3);
}
