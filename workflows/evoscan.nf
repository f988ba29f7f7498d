//
// evoscan: windows -> repeat masking -> all-vs-all BLAST -> embeddings -> scoring -> report,
// per gene set of the samplesheet.
//
include { EVOSCAN_WINDOWS } from '../modules/local/windows'
include { EVOSCAN_MASK    } from '../modules/local/mask'
include { EVOSCAN_SCORE   } from '../modules/local/score'
include { EVOSCAN_REPORT  } from '../modules/local/report'
include { SCATTER_BLAST   } from '../subworkflows/local/scatter_blast'
include { SCATTER_EMBED   } from '../subworkflows/local/scatter_embed'

workflow EVOSCAN {
    take:
    ch_samples   // channel: [ val(meta), path(sequences), path(gtf) or [] ]
    rmsk         // list: [ path(RepeatMasker .out or repeat BED) ] or []
    blast_chunks // integer: BLAST query chunks
    embed_chunks // integer: embedding chunks (one GPU task each with evo2/hf)
    families     // list: [ path(gene -> family TSV) ] or []

    main:
    EVOSCAN_WINDOWS(ch_samples)
    ch_windows = EVOSCAN_WINDOWS.out.windows

    EVOSCAN_MASK(ch_windows.map { meta, windows -> [meta, windows, rmsk] })
    SCATTER_BLAST(ch_windows, blast_chunks)
    SCATTER_EMBED(ch_windows, embed_chunks)

    ch_score = ch_windows
        .join(EVOSCAN_MASK.out.masks)
        .join(SCATTER_BLAST.out.blast)
        .join(SCATTER_EMBED.out.embeddings)
        .map { meta, windows, masks, blast, embeddings -> [meta, windows, masks, blast, embeddings, families] }
    EVOSCAN_SCORE(ch_score)
    EVOSCAN_REPORT(ch_windows.join(EVOSCAN_SCORE.out.scores))

    emit:
    candidates = EVOSCAN_REPORT.out.candidates // channel: [ val(meta), path(candidates.tsv) ]
    pairs      = EVOSCAN_REPORT.out.pairs      // channel: [ val(meta), path(pairs.tsv.gz) ]
    scores     = EVOSCAN_SCORE.out.scores      // channel: [ val(meta), path(scores.h5) ]
}
